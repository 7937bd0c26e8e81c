"""Scripts on a pipe: no prompt, no line editor, no colour; one line per failure on stderr."""

from __future__ import annotations

import re
from pathlib import Path

from tests.harness import free_port
from tests.repl.terminal import UUID, piped, repl_env


async def test_a_piped_script_runs_plainly_and_its_exit_status_tells_a_failure(
    bridge_url: str, tmp_path: Path
) -> None:
    script = "mode compact\nrun hi\nlist\nshow nope\nexit\nlist\n"
    answer = await piped([bridge_url], script, repl_env(tmp_path))
    assert answer.returncode == 1  # show nope failed
    assert "\x1b" not in answer.stdout + answer.stderr
    assert "codex>" not in answer.stdout
    assert "[agent] Hello from the fake model.\n→ usage: 100 in / 10 out (total 110)\n" in (
        answer.stdout
    )
    session_id = re.search(rf"→ pinned session ({UUID})", answer.stdout)
    assert session_id is not None
    assert answer.stdout.count("1 session(s)") == 1  # the list after exit never ran
    assert session_id[1] in answer.stdout.split("1 session(s)")[1]
    assert answer.stderr == "✗ 404 Not Found: Session 'nope' not found\n"


async def test_a_pasted_block_is_one_prompt_and_a_clean_script_exits_0(
    bridge_url: str, tmp_path: Path
) -> None:
    script = "mode compact\nrun\n[[scenario:echo_history]] one\ntwo\n'''\n"
    answer = await piped([bridge_url], script, repl_env(tmp_path))
    assert answer.returncode == 0, answer.stderr
    assert "]] one\ntwo\n\nAssistant:'" in answer.stdout
    assert "Paste the prompt" not in answer.stdout  # scripts get no instructions


async def test_settings_commands_answer_without_a_gateway(tmp_path: Path) -> None:
    script = "\n".join(
        [
            "setenv A 1",
            "setenv B two words",
            "setenv A",
            "setenv",
            "watch usage model",
            "watch",
            "timeout 2.5",
            "timeout",
            "MODE compact",
            "mode",
            "use abc",
            "use",
            "use clear",
            "use",
            "setenv clear",
            "",
            "help",
            "quit",
        ]
    )
    answer = await piped([f"http://127.0.0.1:{free_port()}"], script + "\n", repl_env(tmp_path))
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.splitlines()[:14] == [
        "env overrides: A=1",
        "env overrides: A=1 B=two words",
        "env overrides: B=two words",
        "env overrides: B=two words",
        "watching: usage model",
        "watching: usage model",
        "timeout: 2.5 s",
        "timeout: 2.5 s",
        "mode: compact",
        "mode: compact",
        "→ pinned session abc",
        "pinned session: abc",
        "No session pinned: the next run starts a new one.",
        "pinned session: none",
    ]
    assert "env overrides: none" in answer.stdout
    assert "search <id> <phrase> [--f]" in answer.stdout  # help


async def test_mistakes_are_one_line_each(tmp_path: Path) -> None:
    script = "bogus\ntimeout -1\nmode loud\nsetenv 1A x\nshow\nshow a b\nsearch a\nprompt a\nrun\n"
    answer = await piped([f"http://127.0.0.1:{free_port()}"], script, repl_env(tmp_path))
    assert answer.returncode == 1
    assert answer.stderr.splitlines() == [
        "✗ unknown command 'bogus' (type help for the list)",
        "✗ usage: timeout <seconds> (a positive number)",
        "✗ usage: mode <full|compact>",
        "✗ not a variable name: '1A'",
        "✗ usage: show <id> [events|triggers]",
        "✗ usage: show <id> [events|triggers]",
        "✗ usage: search <id> <phrase> [--f]",
        "✗ usage: prompt <id> <text>",
    ]


async def test_schema_and_image_settings_answer_without_a_gateway(tmp_path: Path) -> None:
    (tmp_path / "schema.json").write_text('{"type": "object"}')
    (tmp_path / "bad.json").write_text("{oops")
    (tmp_path / "shot.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(8))
    (tmp_path / "fake.png").write_bytes(b"\x7fELF" + bytes(8))
    script = "\n".join(
        [
            "schema",
            f"schema {tmp_path}/schema.json",
            f"schema {tmp_path}/bad.json",
            "schema",
            "schema clear",
            "image",
            f"image {tmp_path}/shot.png",
            "image ws:docs/a b.png",
            f"image {tmp_path}/fake.png",
            "image",
            "image clear",
            "help",
            "changes",
            "changes a r1 r2",
            "fork",
        ]
    )
    answer = await piped([f"http://127.0.0.1:{free_port()}"], script + "\n", repl_env(tmp_path))
    assert answer.returncode == 1
    assert answer.stdout.splitlines()[:9] == [
        "output schema: none",
        f"output schema: {tmp_path}/schema.json (sent with every run)",
        f"output schema: {tmp_path}/schema.json (sent with every run)",
        "output schema: none",
        "images for the next run: none",
        f"images for the next run: {tmp_path}/shot.png (image/png, 16 B)",
        f"images for the next run: {tmp_path}/shot.png (image/png, 16 B),"
        " ws:docs/a b.png (in the workspace)",
        f"images for the next run: {tmp_path}/shot.png (image/png, 16 B),"
        " ws:docs/a b.png (in the workspace)",
        "images for the next run: none",
    ]
    for usage in (
        "fork <id> [prompt]",
        "changes <id> [run_id] [diff]",
        "schema <file.json>|clear",
        "image <file>|ws:<path>|clear",
        "show <id> [events|triggers]",  # brackets are text, not markup
    ):
        assert usage in answer.stdout  # help
    assert answer.stderr.splitlines() == [
        f"✗ the schema file {tmp_path}/bad.json is not JSON: Expecting property name enclosed in"
        " double quotes (line 1, column 2)",
        f"✗ not a PNG, JPEG, GIF or WebP image: {tmp_path}/fake.png",
        "✗ usage: changes <id> [run_id] [diff]",
        "✗ usage: changes <id> [run_id] [diff]",
        "✗ usage: fork <id> [prompt]",
    ]
