"""The prompt text codex gets on stdin, and the global system prompt."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.runs.prompt import (
    MAX_SYSTEM_PROMPT_BYTES,
    GlobalSystemPrompt,
    Message,
    build_prompt,
    messages_or_prompt,
)
from tests.faults.spawned import gateway_env, running


def test_blocks_as_the_reference_builds_them() -> None:
    text = build_prompt(
        " be brief ",
        [
            Message("user", " hi "),
            Message("assistant", "hello"),
            Message("tool", "x"),
            Message("SYSTEM", "s"),
        ],
    )
    assert (
        text == "System:\nbe brief\n\nUser:\nhi\n\nAssistant:\nhello\n\n"
        "User:\nx\n\nSystem:\ns\n\nAssistant:\n"
    )


def test_no_system_block_when_blank() -> None:
    assert build_prompt("  ", [Message("", "q")]) == "User:\nq\n\nAssistant:\n"


@given(
    st.text(),
    st.lists(st.tuples(st.sampled_from(["user", "assistant", "system", "x", ""]), st.text())),
)
def test_every_message_content_reaches_the_prompt(
    system: str, pairs: list[tuple[str, str]]
) -> None:
    text = build_prompt(system, [Message(role, content) for role, content in pairs])
    assert text.endswith("Assistant:\n")
    for _, content in pairs:
        assert content.strip() in text


def test_global_prompt_states(tmp_path: Path) -> None:
    assert GlobalSystemPrompt.load(tmp_path / "none.md", disabled=False).reason == "missing"
    (tmp_path / "empty.md").write_text("  \n")
    assert GlobalSystemPrompt.load(tmp_path / "empty.md", disabled=False).reason == "empty"
    (tmp_path / "p.md").write_text("GLOBAL\n")
    loaded = GlobalSystemPrompt.load(tmp_path / "p.md", disabled=False)
    assert loaded.enabled and loaded.combine("mine") == "GLOBAL\n\nmine"
    assert loaded.combine("") == "GLOBAL"
    assert GlobalSystemPrompt.load(tmp_path / "p.md", disabled=True).reason == "disabled"


def test_a_prompt_file_that_is_not_a_regular_file_is_unusable_and_nothing_blocks(
    tmp_path: Path,
) -> None:
    fifo = tmp_path / "fifo.md"
    os.mkfifo(fifo)  # opened plainly, this would wait for a writer forever
    assert GlobalSystemPrompt.load(fifo, disabled=False).reason == "unusable: a FIFO"
    (tmp_path / "dir.md").mkdir()
    assert GlobalSystemPrompt.load(tmp_path / "dir.md", disabled=False).reason == (
        "unusable: a directory"
    )
    huge = tmp_path / "huge.md"
    with huge.open("wb") as handle:
        handle.truncate(MAX_SYSTEM_PROMPT_BYTES + 1)
    loaded = GlobalSystemPrompt.load(huge, disabled=False)
    assert not loaded.enabled and loaded.reason is not None
    assert loaded.reason.startswith("unusable: larger than")
    link = tmp_path / "link.md"
    link.symlink_to(tmp_path / "p.md")
    (tmp_path / "p.md").write_text("LINKED\n")
    assert GlobalSystemPrompt.load(link, disabled=False).text == "LINKED\n"  # the operator's


async def test_a_gateway_whose_prompt_file_is_a_fifo_in_its_workspace_starts_and_warns(
    tmp_path: Path,
) -> None:
    env = gateway_env(tmp_path)
    prompt = Path(env["CODEX_GATEWAY_DEFAULT_WORKSPACE"]) / "PROMPT.md"
    os.mkfifo(prompt)  # what an agent can leave in its workspace
    env |= {"CODEX_SYSTEM_PROMPT_FILE": str(prompt), "CODEX_DISABLE_DEFAULT_PROMPT": ""}
    async with running(env, tmp_path) as gateway:
        async with httpx.AsyncClient(base_url=gateway.url, trust_env=False) as client:
            status = (await client.get("/status")).json()
        assert status["system_prompt"]["reason"] == "unusable: a FIFO"
        assert "lies inside the workspace" in gateway.log_tail(200)


@pytest.mark.parametrize(
    ("messages", "prompt", "expected"),
    [
        pytest.param([Message("user", "hi")], "ignored", [Message("user", "hi")], id="messages"),
        pytest.param([], "do it", [Message("user", "do it")], id="prompt"),
        pytest.param([], "  \n", [], id="blank-prompt"),
        pytest.param([], None, [], id="neither"),
        pytest.param([Message("system", " ")], None, [Message("system", " ")], id="blank-message"),
    ],
)
def test_a_run_says_its_messages_else_its_prompt(
    messages: list[Message], prompt: str | None, expected: list[Message]
) -> None:
    assert messages_or_prompt(messages, prompt) == expected
