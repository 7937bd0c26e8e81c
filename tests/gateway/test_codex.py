"""How codex is invoked. A newcomer without model credentials gets a clear 503 naming what is
missing, at once, instead of codex retrying 'waiting for network' until the run's deadline."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from codex_gateway.v1 import runs_pb2
from gateway.agent.codex import argv, find_binary, is_codex, missing_credentials, runs_an_agent
from gateway.config import Config
from gateway.errors import AgentFailed
from tests.fakes import CODEX_BIN
from tests.harness import running_gateway


async def test_no_key_no_login_no_provider_is_unavailable_naming_them(
    config_for: Callable[..., Config], tmp_path: Path
) -> None:
    home = tmp_path / "empty-codex-home"
    home.mkdir()
    config = config_for(codex_bin=CODEX_BIN, codex_home=home, child_env={"PATH": "/usr/bin:/bin"})
    async with running_gateway(config) as gw:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await gw.stub.Complete(runs_pb2.CompleteRequest(run=runs_pb2.RunInput(prompt="hi")))
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "OPENAI_API_KEY" in (caught.value.details() or "")
    assert not list(config.session_dirs[0].glob("session-*"))


@pytest.mark.parametrize(
    ("env", "files", "args", "ok"),
    [
        pytest.param({}, {}, (), False, id="nothing"),
        pytest.param({"OPENAI_API_KEY": "k"}, {}, (), True, id="openai-key"),
        pytest.param({"CODEX_API_KEY": "k"}, {}, (), True, id="codex-key"),
        pytest.param({"OPENAI_API_KEY": " "}, {}, (), False, id="blank-key"),
        pytest.param({}, {"auth.json": "{}"}, (), True, id="logged-in"),
        pytest.param({}, {"config.toml": 'model_provider = "fake"\n'}, (), True, id="provider"),
        pytest.param({}, {"config.toml": 'model = "gpt-5.5"\n'}, (), False, id="model-only"),
        pytest.param({}, {}, ("-c", "model_provider=ollama"), True, id="provider-arg"),
        pytest.param({}, {}, ("--oss",), True, id="oss"),
    ],
)
def test_what_counts_as_credentials(
    tmp_path: Path, env: dict[str, str], files: dict[str, str], args: tuple[str, ...], ok: bool
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    assert (missing_credentials(tmp_path, env, args) is None) is ok


@pytest.mark.parametrize(
    ("name", "codex"),
    [
        pytest.param("codex", True, id="native"),
        pytest.param("codex.js", True, id="npm-shim"),
        pytest.param("fake_agent.py", False, id="stand-in"),
        pytest.param("codex-wrapper", False, id="wrapper"),
    ],
)
def test_only_the_codex_cli_itself_counts_as_codex(name: str, codex: bool) -> None:
    assert is_codex(Path("/opt/bin") / name) is codex


@pytest.mark.parametrize(
    ("cmdline", "agent"),
    [
        pytest.param([b"/usr/bin/codex", b"exec"], True, id="codex"),
        pytest.param([b"python3", b"/t/fakes/echo_agent.py"], True, id="scripted-agent"),
        pytest.param([b"node", b"/n/codex.js", b"exec"], True, id="npm-shim"),
        pytest.param([b"sleep", b"100"], False, id="recycled-pid"),
        pytest.param([b"python3", b"-c", b"codex"], False, id="name-in-a-later-argument"),
    ],
)
def test_what_runs_an_agent(cmdline: list[bytes], agent: bool) -> None:
    assert runs_an_agent(cmdline) is agent


THREAD = "0199a213-81c0-7800-8aa1-bbab2a035a53"


@pytest.mark.parametrize(
    ("overrides", "model", "thread", "tail"),
    [
        pytest.param({}, None, None, ["--sandbox", "read-only", "--cd", "W", "--", "-"], id="new"),
        pytest.param(
            {},
            "gpt-5",
            THREAD,
            [
                "--sandbox",
                "read-only",
                "--cd",
                "W",
                "--model",
                "gpt-5",
                "resume",
                "--",
                THREAD,
                "-",
            ],
            id="resume-with-model",
        ),
        pytest.param(
            {"unsafe_no_sandbox": True, "extra_args": ["-c", "x=1"]},
            None,
            None,
            ["--dangerously-bypass-approvals-and-sandbox", "--cd", "W", "-c", "x=1", "--", "-"],
            id="no-sandbox-extra-args",
        ),
    ],
)
def test_argv_keeps_positionals_after_a_double_dash(
    config_for: Callable[..., Config],
    overrides: dict[str, object],
    model: str | None,
    thread: str | None,
    tail: list[str],
) -> None:
    config = config_for(codex_bin=Path("/opt/codex"), sandbox="read-only", **overrides)
    args = argv(config, Path("W"), model, thread)
    head = ["/opt/codex", "exec", config.json_flag, "--color", "never", "--skip-git-repo-check"]
    assert args == [*head, *tail]


def test_argv_refuses_a_thread_that_is_not_a_uuid(config_for: Callable[..., Config]) -> None:
    with pytest.raises(AgentFailed):
        argv(config_for(), Path("W"), None, "--help")


THREAD = "01a24a90-85ca-7253-b978-30b7501d449e"


@pytest.mark.parametrize(
    ("options", "tail"),
    [
        pytest.param(
            {"output_schema": Path("/r/schema.json"), "images": [Path("/r/a.png"), Path("/r/b")]},
            [
                "--output-schema",
                "/r/schema.json",
                "--image=/r/a.png",
                "--image=/r/b",
                "--",
                "-",
            ],
            id="schema-and-images-before-the-prompt",
        ),
        pytest.param(
            {"images": [Path("/r/a.png")], "resume_thread": THREAD},
            ["--image=/r/a.png", "resume", "--", THREAD, "-"],
            id="an-image-before-resume-takes-one-value",
        ),
        pytest.param({"fork_thread": THREAD}, ["fork", "--", THREAD, "-"], id="fork"),
        pytest.param(
            {"fork_thread": THREAD, "prompt": False}, ["fork", "--", THREAD], id="fork-no-turn"
        ),
    ],
)
def test_argv_puts_exec_options_before_the_subcommand(
    config_for: Callable[..., Config], options: dict[str, Any], tail: list[str]
) -> None:
    options = dict(options)
    resume = options.pop("resume_thread", None)
    args = argv(config_for(sandbox="read-only"), Path("W"), None, resume, **options)
    assert args[args.index("W") + 1 :] == tail


def test_argv_refuses_an_image_path_codex_would_split(config_for: Callable[..., Config]) -> None:
    with pytest.raises(AgentFailed):
        argv(config_for(), Path("W"), None, None, images=[Path("/tmp/a,b/image-1.png")])


def test_argv_refuses_to_resume_and_fork_at_once(config_for: Callable[..., Config]) -> None:
    with pytest.raises(AgentFailed):
        argv(config_for(), Path("W"), None, THREAD, fork_thread=THREAD)


def test_without_a_configured_binary_the_projects_native_codex_runs(tmp_path: Path) -> None:
    """`make serve` installs codex with npm into the project: that one runs, its native binary
    rather than the node shim, whatever PATH holds (a regrouping of the package once made the
    lookup miss the project's node_modules and fall back to PATH)."""
    assert find_binary(None, tmp_path) == CODEX_BIN
    config = Config.from_env({"PATH": str(tmp_path)})  # no codex on this PATH
    assert config.codex_bin == CODEX_BIN


@pytest.mark.parametrize(
    ("configured", "expected"),
    [
        pytest.param("bin/agent", "HERE/bin/agent", id="a-relative-path-from-here"),
        pytest.param("/opt/codex", "/opt/codex", id="an-absolute-path"),
        pytest.param("no-such-codex-anywhere", "no-such-codex-anywhere", id="a-name-not-on-path"),
    ],
)
def test_a_configured_binary_is_taken_as_given(
    tmp_path: Path, configured: str, expected: str
) -> None:
    found = find_binary(configured, tmp_path)
    assert str(found) == expected.replace("HERE", str(tmp_path))
