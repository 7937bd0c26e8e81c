"""Secure-session access: the one place the secure token is compared, for runner and servicer."""

from __future__ import annotations

import pytest

from gateway.errors import SecureAccessDenied
from gateway.sessions.access import SecureAccess, offered_tokens


@pytest.mark.parametrize(
    ("configured", "offered", "ok"),
    [
        pytest.param("s3cret", [], False, id="none-offered"),
        pytest.param("s3cret", ["s3cret"], True, id="right"),
        pytest.param("s3cret", ["wrong", "s3cret"], True, id="second-of-two"),
        pytest.param("s3cret", ["s3cret-and-more"], False, id="longer"),
        pytest.param("s3cret", ["S3CRET"], False, id="case"),
        pytest.param(None, ["anything"], False, id="not-configured"),
        pytest.param(None, [""], False, id="not-configured-empty"),
    ],
)
def test_which_tokens_open_a_secure_session(
    configured: str | None, offered: list[str], ok: bool
) -> None:
    access = SecureAccess(configured)
    assert access.ok(offered) is ok
    assert access.configured is (configured is not None)
    if ok:
        access.require(offered)
    else:
        with pytest.raises(SecureAccessDenied):
            access.require(offered)


def test_the_tokens_a_request_offers_are_read_from_every_key_in_order() -> None:
    metadata = [
        ("x-secure-token", " a "),
        ("authorization", "Bearer x"),
        ("x-codex-secure-token", "b"),
        ("x-secure-token-query", "  "),
        ("x-secure-token-query", "c"),
    ]
    assert offered_tokens(metadata) == ["a", "b", "c"]
