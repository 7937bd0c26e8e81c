"""The prompt text codex gets on stdin, and the global system prompt."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from gateway.prompt import GlobalSystemPrompt, Message, build_prompt


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
