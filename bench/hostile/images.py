"""Hostile images on a run: inline bytes that are not base64, not the image they claim, of a
type that is not an image, thousands of them; paths that escape the workspace (`..`, absolute,
symlinks out, 2,000 components), that are a FIFO, a socket, a device, a directory, a 100 MB
sparse file, or an ELF named .png; each on a completion over REST and gRPC."""

from __future__ import annotations

import base64
import os
import socket
from typing import Any

from google.protobuf import json_format

from bench.hostile.calls import grpc_probe, rest_probe
from bench.hostile.census import Probe, Target
from codex_gateway.v1 import runs_pb2

HUGE_BYTES = 100 * 1024 * 1024
PNG_HEAD = b"\x89PNG\r\n\x1a\n"
ELF = b"\x7fELF\x02\x01\x01" + b"\x00" * 57
THOUSANDS = 5_000


def make_hostile_images(target: Target) -> None:
    """The files, in the workspace of a freshly started gateway."""
    root = target.root / "workspace"
    root.mkdir(parents=True, exist_ok=True)
    os.mkfifo(root / "fifo.png")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(root / "socket.png"))
    listener.close()  # the file stays; connecting to it is refused
    (root / "passwd.png").symlink_to("/etc/passwd")
    (root / "zero.png").symlink_to("/dev/zero")
    (root / "directory.png").mkdir()
    (root / "elf.png").write_bytes(ELF)
    with (root / "huge.png").open("wb") as huge:
        huge.write(PNG_HEAD)
        huge.truncate(HUGE_BYTES)


def _inline(data: bytes, media_type: str = "image/png") -> dict[str, Any]:
    return {"data": base64.b64encode(data).decode(), "media_type": media_type}


def image_cases() -> list[tuple[str, list[dict[str, Any]]]]:
    """(label, images) pairs; relative paths resolve in the run's workspace."""
    return [
        ("elf as png", [_inline(ELF)]),
        ("text/plain", [_inline(b"hello", "text/plain")]),
        ("no media type", [{"data": base64.b64encode(PNG_HEAD).decode()}]),
        ("data and path", [{**_inline(PNG_HEAD), "path": "elf.png"}]),
        ("neither", [{}]),
        (f"{THOUSANDS} images", [_inline(PNG_HEAD)] * THOUSANDS),
        ("..", [{"path": "../../../../etc/passwd"}]),
        ("absolute outside", [{"path": "/etc/passwd"}]),
        ("symlink out", [{"path": "passwd.png"}]),
        ("symlink to /dev/zero", [{"path": "zero.png"}]),
        ("/dev/zero", [{"path": "/dev/zero"}]),
        ("fifo", [{"path": "fifo.png"}]),
        ("socket", [{"path": "socket.png"}]),
        ("directory", [{"path": "directory.png"}]),
        ("100MB sparse", [{"path": "huge.png"}]),
        ("elf file", [{"path": "elf.png"}]),
        ("2000 x ./", [{"path": "/".join(["."] * 2000) + "/elf.png"}]),
    ]


def image_probes(reduced: bool) -> list[Probe]:
    probes: list[Probe] = [
        rest_probe(
            "invalid base64/rest",
            "POST",
            "/completion",
            "invalid base64",
            json={"prompt": "i", "images": [{"data": "!!!!", "media_type": "image/png"}]},
        )
    ]
    cases = image_cases()
    if reduced:
        cases = [cases[i] for i in (0, 5, 6, 8, 11, 14, 15)]
    for label, images in cases:
        body = {"prompt": "i", "images": images}
        probes.append(rest_probe(f"{label}/rest", "POST", "/completion", label, json=body))
        # The JSON mapping decodes `data` from base64: gRPC carries the bytes themselves.
        request = runs_pb2.CompleteRequest(run=json_format.ParseDict(body, runs_pb2.RunInput()))
        probes.append(grpc_probe(label, f"{label}/grpc", "Complete", request))
    return probes
