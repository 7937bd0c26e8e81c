"""The bridge in front of the real gateway (tests/conftest.py's `rest`): the documented shapes
that do not need a codex run."""

from __future__ import annotations

import httpx


async def test_health(rest: httpx.AsyncClient) -> None:
    response = await rest.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_sessions_list_is_an_array(rest: httpx.AsyncClient) -> None:
    response = await rest.get("/sessions", params={"limit": "5"})
    assert response.status_code == 200
    assert isinstance(response.json(), list)


async def test_unknown_session_is_404_with_its_code(rest: httpx.AsyncClient) -> None:
    for path in ("/sessions/nope", "/sessions/nope/tail"):
        response = await rest.get(path)
        assert response.status_code == 404, path
        assert response.json()["code"] == "NOT_FOUND"
        assert response.json()["error"]


async def test_a_null_message_is_400_and_leaks_no_slot(rest: httpx.AsyncClient) -> None:
    response = await rest.post("/completion", json={"messages": [None]})
    assert response.status_code == 400
    assert "messages" in response.json()["error"]
    status = (await rest.get("/status")).json()
    assert status["concurrency"]["active"] == 0


async def test_a_bad_query_value_never_reaches_the_gateway(rest: httpx.AsyncClient) -> None:
    response = await rest.get("/sessions", params={"limit": "lots"})
    assert response.status_code == 400
    assert "'limit'" in response.json()["error"]
