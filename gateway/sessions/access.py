"""Secure-session access: a secure session is read, run in, listed or resumed only by a caller
offering CODEX_GATEWAY_SECURE_TOKEN, in any of the request metadata keys below.

The one place the token is compared (runner and servicer both ask here), in constant time.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Sequence

from gateway.errors import SecureAccessDenied
from gateway.sessions.model import Session

# The bridge forwards `?secure_token=` as the last one.
TOKEN_KEYS = ("x-codex-secure-token", "x-secure-token", "x-secure-token-query")


def offered_tokens(metadata: Iterable[tuple[str, str | bytes]]) -> list[str]:
    """Every token a request's metadata offers, in order, blank ones left out."""
    return [
        str(value).strip() for key, value in metadata if key in TOKEN_KEYS and str(value).strip()
    ]


class SecureAccess:
    def __init__(self, token: str | None) -> None:
        self._wanted = token.encode() if token is not None else None

    @property
    def configured(self) -> bool:
        """Secure sessions can exist at all (a token is configured)."""
        return self._wanted is not None

    def ok(self, tokens: Sequence[str]) -> bool:
        if self._wanted is None:
            return False
        # Compare every offered token, in constant time each, whatever the first gave.
        results = [hmac.compare_digest(token.encode(), self._wanted) for token in tokens]
        return any(results)

    def require(self, tokens: Sequence[str]) -> None:
        if not self.ok(tokens):
            raise SecureAccessDenied("Secure session requires a valid token")

    def check(self, session: Session, tokens: Sequence[str]) -> None:
        """`session` may be used by a caller offering `tokens`."""
        if session.secure:
            self.require(tokens)
