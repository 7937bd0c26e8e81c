"""The REPL at a terminal, over REST, against the real gateway running the real codex CLI."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from codex_gateway.v1 import sessions_pb2
from gateway.config import Config
from tests.fakes import AGENTS_DIR
from tests.harness import RunningGateway, running_bridge, running_gateway
from tests.repl.terminal import UUID, Terminal, no_children_but


async def test_run_streams_the_reply_pins_the_session_and_the_session_commands_work(
    bridge_url: str, spawn: Callable[..., Terminal], tmp_path: Path
) -> None:
    term = spawn(bridge_url, "--mode", "compact")
    await term.expect("codex>")
    await term.line("run say hello")
    await term.expect("[agent] Hello from the fake model.")
    await term.expect("→ usage: 100 in / 10 out (total 110)")
    session_id = (await term.match(rf"→ pinned session ({UUID})"))[1]
    await term.expect(f"codex ({session_id[:8]})>")

    await term.line(f"prompt {session_id} [[reply:Second answer]] go on")
    await term.expect("[agent] Second answer")
    await term.line("run [[reply:Third answer]] and again")  # on the pinned session
    await term.expect("[agent] Third answer")

    await term.line("list")
    listed = await term.expect("1 session(s)")
    await term.expect(session_id)
    assert "pinned session" not in listed  # the run continued the pinned session
    await term.line(f"show {session_id} events")
    await term.expect("3 run(s)")
    await term.expect("[agent] Hello from the fake model.")
    await term.expect("usage: 100 in / 10 out (total 110)")
    await term.line(f"search {session_id} Second answer")
    await term.match(r"\d+ match\(es\) for 'Second answer'\nline \d+ · score 1\.00")
    await term.line(f"search {session_id} Secnd answr --f")
    await term.match(r"\d+ match\(es\) for 'Secnd answr'\nline \d+ · score 0\.\d\d")
    await term.line("show nope")
    await term.expect("✗ 404 Not Found: Session 'nope' not found")
    await term.line("exit")
    assert await term.exit_status() == 0
    assert "Traceback" not in term.screen
    history = (tmp_path / "repl-history").read_text()
    assert "run say hello" in history and f"search {session_id} Secnd answr --f" in history


async def test_full_mode_prints_the_result_json_and_the_watched_keys(
    bridge_url: str, spawn: Callable[..., Terminal]
) -> None:
    term = spawn(bridge_url)
    await term.line("watch usage.total_tokens status")
    await term.expect("watching: usage.total_tokens status")
    await term.line("run hi")
    await term.expect('{"type":"turn.started"}')  # full mode shows each event as it comes
    await term.expect('"output": "Hello from the fake model."')
    await term.expect('"status": "completed"')
    await term.expect("→ usage.total_tokens: 110")
    await term.expect('→ status: "completed"')
    await term.line("mode compact")
    await term.line("watch clear")
    await term.expect("watching: nothing")
    await term.line("run hi again")
    segment = await term.expect("[agent] Hello from the fake model.")
    assert '"output"' not in segment


async def test_multiline_prompts_by_paste_block_and_alt_enter(
    bridge_url: str, spawn: Callable[..., Terminal]
) -> None:
    term = spawn(bridge_url, "--mode", "compact")
    await term.line("run")
    await term.expect("end it with a line '''")
    await term.line("[[scenario:echo_history]] first line")
    await term.line("second line")
    await term.line("'''")
    await term.expect("]] first line\nsecond line\n\nAssistant:")
    # At the next prompt: this test is about the prompt. (Typed ahead while the run still
    # prints, Alt-Enter arrives as Escape, Ctrl-J: tests/repl/test_lineinput.py.)
    await term.match(r"codex \(\w+\)> ")
    await term.send("run [[scenario:echo_history]] one\x1b\r")  # Alt-Enter: a new line
    await term.line("two")
    await term.expect("]] one\ntwo\n\nAssistant:")


async def test_ctrl_c_cancels_the_run_at_the_gateway_and_returns_to_the_prompt(
    gateway: RunningGateway, bridge_url: str, spawn: Callable[..., Terminal]
) -> None:
    term = spawn(bridge_url, "--mode", "compact", "--timeout", "120")
    await term.line("run [[scenario:tool]] [[cmd:sleep 30]]")
    await term.expect("$ /bin/bash -c 'sleep 30'")  # shown live, while the command runs
    await term.match(r"running · \d+\.\ds · \d+ event\(s\)")
    await term.interrupt()
    session_id = (await term.match(rf"Run cancelled after \d+\.\ds \(session ({UUID})\)\."))[1]
    await term.expect("codex>")
    assert await no_children_but(term.pid) == set()
    detail = await gateway.stub.GetSession(sessions_pb2.GetSessionRequest(session_id=session_id))
    assert detail.session.status == "cancelled"
    await term.interrupt()  # a second Ctrl-C, at the prompt, leaves
    assert await term.exit_status() == 0
    assert "Traceback" not in term.screen


async def test_tab_completes_commands_and_session_ids_and_history_survives_a_restart(
    bridge_url: str, spawn: Callable[..., Terminal]
) -> None:
    term = spawn(bridge_url, "--mode", "compact")
    await term.line("run hi")
    session_id = (await term.match(rf"→ pinned session ({UUID})"))[1]
    await term.send("sho\t")
    await term.expect("show")
    await term.send(f" {session_id[:6]}\t")
    await term.expect(session_id)
    await term.send("\r")
    await term.expect("1 run(s)")
    await term.line("exit")
    assert await term.exit_status() == 0

    again = spawn(bridge_url, "--mode", "compact")
    await again.expect("codex>")
    await again.send("\x1b[A")  # Up: the last line of the previous REPL
    await again.expect("exit")
    await again.send("\x1b[A")
    await again.expect(f"show {session_id}")
    await again.send("\r")
    await again.expect("1 run(s)")


async def test_ctrl_c_at_the_prompt_warns_once_then_leaves(
    bridge_url: str, spawn: Callable[..., Terminal]
) -> None:
    term = spawn(bridge_url)
    await term.expect("codex>")
    await term.interrupt()
    await term.expect("(Ctrl-C again or Ctrl-D to leave)")
    await term.expect("codex>")
    await term.line("mode")  # a command in between disarms it
    await term.expect("mode: full")
    await term.expect("codex>")
    await term.interrupt()
    await term.expect("(Ctrl-C again or Ctrl-D to leave)")
    await term.expect("codex>")
    await term.interrupt()
    assert await term.exit_status() == 0


async def test_no_color_leaves_colour_out_but_keeps_the_terminal_features(
    bridge_url: str, spawn: Callable[..., Terminal]
) -> None:
    term = spawn(bridge_url, "--mode", "compact", NO_COLOR="1")
    await term.line("run hi")
    await term.expect("[agent] Hello from the fake model.")
    await term.line("list")
    await term.expect("1 session(s)")
    await term.line("show nope")
    await term.expect("✗ 404 Not Found")
    await term.line("exit")
    assert await term.exit_status() == 0
    colours = re.findall(r"\x1b\[[0-9;]*m", term.raw)
    assert colours, "styles (bold, dim) stay"
    assert not [c for c in colours if re.search(r"(?<![0-9])(3[0-8]|4[0-8]|9[0-7])(;|m)", c)]


async def test_a_second_ctrl_c_while_the_run_is_being_cancelled_leaves_at_once(
    config_for: Callable[..., Config], spawn: Callable[..., Terminal]
) -> None:
    # The agent ignores SIGINT, so the gateway's cancel takes its whole stop grace (2 s).
    config = config_for(codex_bin=AGENTS_DIR / "hang_agent.py")
    async with running_gateway(config) as gw, running_bridge(gw.target) as url:
        term = spawn(url, "--mode", "compact")
        await term.line("setenv FAKE_AGENT_IGNORE_SIGINT 1")
        await term.line("run wait for me")
        await term.expect("turn.started")
        await term.interrupt()
        await term.expect("cancelling")
        await term.interrupt()
        assert await term.exit_status(wait_s=1.5) == 0
        assert await no_children_but(term.pid) == set()  # the gateway still stopped it
