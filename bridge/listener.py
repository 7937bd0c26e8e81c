"""The socket the bridge serves on, and how a supervised bridge says it is serving on it."""

from __future__ import annotations

import socket
from typing import Final

READY_LINE_PREFIX: Final = b"ready "
"""A supervised bridge writes `ready <port>\\n` to its standard output once it serves."""


def bind_listener(host: str, port: int) -> socket.socket:
    """A TCP socket bound to `host:port` (0 picks a port), not yet listening."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock
