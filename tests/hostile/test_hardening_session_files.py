"""Files the gateway opens on requests, as a same-uid agent may leave them: a session's logs
and codex's config.toml replaced by FIFOs are skipped, never waited on (finding 5's class)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import httpx

from gateway.agent.codex import missing_credentials
from tests.faults.spawned import gateway_env, running


def test_a_fifo_as_codex_config_is_no_provider_and_does_not_block(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "config.toml")  # opened plainly, this waits for a writer forever
    assert missing_credentials(tmp_path, {}, []) is not None
    (tmp_path / "config.toml").unlink()
    (tmp_path / "config.toml").write_text('model_provider = "local"\n')
    assert missing_credentials(tmp_path, {}, []) is None


async def test_a_sessions_logs_replaced_by_fifos_are_skipped_on_every_read(
    tmp_path: Path,
) -> None:
    async with (
        running(gateway_env(tmp_path), tmp_path) as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=10, trust_env=False) as client,
    ):
        run = await client.post("/completion", json={"prompt": "hello"})
        assert run.status_code == 200, run.text
        session_id = run.json()["session_id"]
        [folder] = (tmp_path / "sessions").glob(f"session-{session_id}")
        for name in ("stdout.log", "stderr.log", "events.jsonl"):
            (folder / name).unlink()
            os.mkfifo(folder / name)
        for url, params in (
            (f"/sessions/{session_id}", {"include_stderr": "true", "include_events": "true"}),
            (f"/sessions/{session_id}/search", {"q": "hello"}),
            (f"/sessions/{session_id}/search", {"q": "hello", "fuzzy": "true"}),
            (f"/sessions/{session_id}/tail", {"include_stderr": "true", "include_events": "true"}),
        ):
            answer = await asyncio.wait_for(client.get(url, params=params), 10)
            assert answer.status_code == 200, (url, answer.text)
            assert (await client.get("/health")).status_code == 200
        again = await client.post(f"/sessions/{session_id}/prompt", json={"prompt": "more"})
        assert again.status_code in (200, 500), again.text  # the run itself cannot log there
        assert (await client.get("/health")).status_code == 200
