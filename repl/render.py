"""Rendering: what the REPL prints, in full (pretty JSON) or compact (codex's words) mode.

Everything goes through rich, which leaves colour out when the output is not a terminal or
NO_COLOR is set. Text from the gateway is never parsed as rich markup.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from rich import box
from rich.console import Console
from rich.json import JSON
from rich.table import Table
from rich.text import Text

JsonObject = Mapping[str, Any]

CLIP_CHARS: Final = 500


def clip(text: str, limit: int = CLIP_CHARS) -> str:
    """`text`, or its first `limit` characters and how long it was."""
    text = text.rstrip("\n")
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...(truncated, {len(text)} chars)"


def _int(value: Any) -> int:
    """A token count; gRPC's JSON prints int64 as a string."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _when(value: Any) -> str:
    """`2026-11-25T09:36:02.684Z` as `2026-11-25 09:36:02`."""
    return str(value or "")[:19].replace("T", " ")


def _labelled(label: str, text: str, style: str) -> Text:
    return Text.assemble((f"[{label}]", style), " ", clip(text))


def event_lines(event: JsonObject) -> list[Text]:
    """The compact lines of one codex event: reasoning, agent text, commands and their output."""
    kind = event.get("type")
    item = event.get("item")
    item = item if isinstance(item, Mapping) else {}
    item_type = item.get("type")
    if kind == "item.started" and item_type == "command_execution":
        return [Text(f"$ {item.get('command', '')}", style="bold")]
    if kind == "error":
        return [_labelled("notice", str(event.get("message", "")), "yellow")]
    if kind == "turn.failed":
        error = event.get("error")
        message = error.get("message", "") if isinstance(error, Mapping) else ""
        return [_labelled("failed", str(message), "bold red")]
    if kind != "item.completed":
        return []
    if item_type == "reasoning":
        return [_labelled("reasoning", str(item.get("text", "")), "magenta")]
    if item_type == "agent_message":
        return [_labelled("agent", str(item.get("text", "")), "bold cyan")]
    if item_type == "command_execution":
        return _command_output(item)
    if item_type == "file_change":
        changes = item.get("changes")
        return [
            _labelled("file", f"{change.get('kind', '?')} {change.get('path', '?')}", "green")
            for change in (changes if isinstance(changes, list) else [])
            if isinstance(change, Mapping)
        ]
    if item_type == "mcp_tool_call":
        return [_labelled("tool", f"{item.get('server', '?')}/{item.get('tool', '?')}", "blue")]
    if item_type == "web_search":
        return [_labelled("search", str(item.get("query", "")), "blue")]
    if item_type == "error":
        return [_labelled("error", str(item.get("message", "")), "red")]
    return []


def _command_output(item: JsonObject) -> list[Text]:
    lines = []
    output = item.get("aggregated_output")
    if isinstance(output, str) and output.strip():
        lines.append(Text(clip(output), style="dim"))
    exit_code = item.get("exit_code")
    if isinstance(exit_code, int | float | str) and str(exit_code) not in ("0", ""):
        lines.append(Text(f"(exit {exit_code})", style="red"))
    return lines


def summary_lines(events: Iterable[Any]) -> list[Text]:
    """The compact summary of a run's (or a session's) events."""
    return [line for event in events if isinstance(event, Mapping) for line in event_lines(event)]


def usage_text(usage: Any) -> str | None:
    """`100 in / 10 out (total 110)`, or None when there is no usage."""
    if not isinstance(usage, Mapping):
        return None
    tokens_in, tokens_out = _int(usage.get("input_tokens")), _int(usage.get("output_tokens"))
    total = _int(usage.get("total_tokens")) or tokens_in + tokens_out
    return f"{tokens_in} in / {tokens_out} out (total {total})"


def changes_text(summary: Any) -> str | None:
    """`3 file(s), +12 -4` (a `changes` summary), or None when there is none."""
    if not isinstance(summary, Mapping):
        return None
    files = _int(summary.get("files"))
    if summary.get("source") == "codex_events":
        return f"{files} file(s) (as codex reported them, no line counts)"
    return f"{files} file(s), +{_int(summary.get('additions'))} -{_int(summary.get('deletions'))}"


def diff_lines(diff: str) -> list[Text]:
    """A unified diff, coloured as git colours it."""
    lines = []
    for line in diff.splitlines():
        if line.startswith(("diff --git", "+++", "---", "index ", "new file", "deleted file")):
            style = "bold"
        elif line.startswith("+"):
            style = "green"
        elif line.startswith("-"):
            style = "red"
        elif line.startswith("@@"):
            style = "cyan"
        else:
            style = ""
        lines.append(Text(line, style=style))
    return lines


def watched(result: JsonObject, key: str) -> Any:
    """The value of `key` in a result; dots go into objects (`usage.total_tokens`)."""
    value: Any = result
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def created_triggers(events: Iterable[Any]) -> list[JsonObject]:
    """Triggers the agent created: `create_trigger` MCP tool calls whose result holds one."""
    found = []
    for event in events:
        if not isinstance(event, Mapping) or event.get("type") != "item.completed":
            continue
        item = event.get("item")
        if not isinstance(item, Mapping) or item.get("type") != "mcp_tool_call":
            continue
        if item.get("tool") != "create_trigger":
            continue
        result = item.get("result")
        content = result.get("content") if isinstance(result, Mapping) else None
        for part in content if isinstance(content, list) else []:
            text = part.get("text") if isinstance(part, Mapping) else None
            try:
                parsed = json.loads(text) if isinstance(text, str) else None
            except ValueError:
                continue
            trigger = parsed.get("trigger") if isinstance(parsed, Mapping) else None
            if isinstance(trigger, Mapping) and trigger.get("id"):
                found.append(trigger)
    return found


class Renderer:
    """Prints results, tables and messages; errors go to their own console (stderr)."""

    def __init__(self, out: Console, err: Console) -> None:
        self.out = out
        self.err = err

    def info(self, message: str, style: str = "") -> None:
        self.out.print(Text(message, style=style), soft_wrap=True)

    def error(self, message: str) -> None:
        self.err.print(Text(f"✗ {message}", style="bold red"), soft_wrap=True)

    def lines(self, lines: Sequence[Text]) -> None:
        for line in lines:
            self.out.print(line, soft_wrap=True)

    def json(self, value: Any) -> None:
        self.out.print(JSON.from_data(value, indent=2, default=str), soft_wrap=True)

    def result(
        self, result: JsonObject, *, full: bool, streamed: bool, watch: Sequence[str]
    ) -> None:
        """A run's result: its JSON (full) or its summary unless it was shown live (compact),
        then the model, the usage and the watched keys."""
        if full:
            self.json(result)
        else:
            if not streamed:
                events = result.get("events")
                self.lines(summary_lines(events if isinstance(events, list) else []))
            # REST prints an unset `structured` as null, as the documented keys are printed.
            if "structured" not in watch and result.get("structured") is not None:
                self.info("→ structured:", "bold")
                self.json(result["structured"])
            # Only when the run changed something: a line on every run would be noise.
            changes = changes_text(result.get("changes"))
            if "changes" not in watch and changes and _int(result["changes"].get("files")):
                self.info(f"→ changes: {changes}", "dim")
        if "model" not in watch and result.get("model"):
            self.info(f"→ model: {result['model']}", "dim")
        usage = usage_text(result.get("usage"))
        if "usage" not in watch and usage:
            self.info(f"→ usage: {usage}", "dim")
        for key in watch:
            value = json.dumps(watched(result, key), ensure_ascii=False, default=str)
            self.out.print(Text.assemble((f"→ {key}: ", "bold"), value), soft_wrap=True)

    def sessions(self, sessions: Sequence[JsonObject]) -> None:
        """`list`: one row per session, newest first; the id is never shortened."""
        if not sessions:
            self.info("No sessions.")
            return
        with_model = any(session.get("model") for session in sessions)
        with_objective = any(session.get("objective") for session in sessions)
        table = Table(
            title=f"{len(sessions)} session(s)",
            title_justify="left",
            box=box.SIMPLE_HEAD,
            show_edge=False,
            pad_edge=False,
        )
        table.add_column("session", no_wrap=True, min_width=36, style="cyan")
        table.add_column("status", no_wrap=True, min_width=9)
        table.add_column("runs", justify="right", no_wrap=True)
        table.add_column("updated", no_wrap=True, style="dim")
        if with_model:
            table.add_column("model", no_wrap=True, overflow="ellipsis")
        if with_objective:
            table.add_column("objective", no_wrap=True, overflow="ellipsis")
        for session in sessions:
            row = [
                Text(str(session.get("session_id", ""))),
                Text(str(session.get("status", "")), style=_status_style(session.get("status"))),
                Text(str(_int(session.get("runs")))),
                Text(_when(session.get("updated_at"))),
            ]
            if with_model:
                row.append(Text(str(session.get("model") or "")))
            if with_objective:
                row.append(Text(str(session.get("objective") or "").replace("\n", " ")))
            table.add_row(*row)
        self.out.print(table)

    def changes(self, answer: JsonObject, *, full: bool) -> None:
        """`changes`: the answer as JSON (full) or a table of the files (compact), then the
        diff, coloured, whatever the mode."""
        diff = answer.get("diff")
        if full:
            self.json({key: value for key, value in answer.items() if key != "diff"})
        else:
            self._changes_table(answer)
        if isinstance(diff, str):
            self.lines(diff_lines(diff))
            if answer.get("diff_truncated"):
                self.info("(the diff is cut here: it is longer than the gateway sends)", "yellow")

    def _changes_table(self, answer: JsonObject) -> None:
        files = answer.get("files")
        files = [f for f in files if isinstance(f, Mapping)] if isinstance(files, list) else []
        source = str(answer.get("source") or "")
        head = f"run {str(answer.get('run_id') or '?')[:8]}: "
        head += changes_text(answer.get("summary") or {"source": source}) or "no changes"
        if source == "git" and answer.get("base_commit"):
            head += f" · since {str(answer['base_commit'])[:10]}"
        if answer.get("running"):
            head += " · still running: the changes so far"
        self.info(head, "bold")
        if not files:
            return
        table = Table(show_header=False, box=None, padding=(0, 1), pad_edge=False)
        table.add_column(no_wrap=True)
        table.add_column(justify="right", no_wrap=True, style="green")
        table.add_column(justify="right", no_wrap=True, style="red")
        table.add_column(overflow="fold")
        for change in files:
            status = str(change.get("status") or "?")
            path = str(change.get("path") or "?")
            if change.get("old_path"):
                path = f"{change['old_path']} → {path}"
            if change.get("binary"):
                adds, dels = "binary", ""
            elif source == "codex_events":
                adds, dels = "", ""
            else:
                adds, dels = (
                    f"+{_int(change.get('additions'))}",
                    f"-{_int(change.get('deletions'))}",
                )
            table.add_row(Text(status, style=_CHANGE_STYLES.get(status, "")), adds, dels, path)
        self.out.print(table)

    def session(self, detail: JsonObject, *, full: bool, events: bool) -> None:
        """`show`: the detail as JSON (full) or a summary (compact), then each run's usage."""
        if full:
            self.json(detail)
        else:
            self._session_summary(detail, events=events)
        for run in _runs(detail):
            usage = usage_text(run.get("usage"))
            if usage:
                self.info(f"→ run {run.get('run_id', '?')} usage: {usage}", "dim")

    def _session_summary(self, detail: JsonObject, *, events: bool) -> None:
        facts = Table.grid(padding=(0, 2))
        facts.add_column(style="bold")
        facts.add_column()
        for label, key in (
            ("session", "session_id"),
            ("codex thread", "codex_session_id"),
            ("status", "status"),
            ("model", "model"),
            ("objective", "objective"),
            ("workspace", "workspace"),
            ("forked from", "forked_from"),
            ("created", "created_at"),
            ("updated", "updated_at"),
        ):
            value = detail.get(key)
            if isinstance(value, Mapping):  # forked_from: the parent session
                value = value.get("session_id")
            if value:
                text = _when(value) if key.endswith("_at") else str(value)
                facts.add_row(
                    label, Text(text, style=_status_style(value) if key == "status" else "")
                )
        self.out.print(facts)
        runs = _runs(detail)
        if runs:
            table = Table(
                title=f"{len(runs)} run(s)",
                title_justify="left",
                box=box.SIMPLE_HEAD,
                show_edge=False,
                pad_edge=False,
            )
            table.add_column("run", no_wrap=True, style="cyan")
            table.add_column("status", no_wrap=True, min_width=9)
            table.add_column("source", no_wrap=True)
            table.add_column("started", no_wrap=True, style="dim")
            table.add_column("took", no_wrap=True, justify="right")
            with_changes = any(isinstance(run.get("changes"), Mapping) for run in runs)
            if with_changes:
                table.add_column("changes", no_wrap=True, style="dim")
            for run in runs:
                duration = run.get("duration_ms")
                row = [
                    Text(str(run.get("run_id", ""))[:8]),
                    Text(str(run.get("status", "")), style=_status_style(run.get("status"))),
                    Text(str(run.get("source", ""))),
                    Text(_when(run.get("started_at"))),
                    Text(f"{_int(duration) / 1000:.1f}s" if duration is not None else ""),
                ]
                if with_changes:
                    row.append(Text(_short_changes(run.get("changes"))))
                table.add_row(*row)
            self.out.print(table)
        if events:
            found = detail.get("events")
            self.lines(summary_lines(found if isinstance(found, list) else []))

    def triggers(self, triggers: Sequence[JsonObject]) -> None:
        if not triggers:
            self.info("No triggers were created in this session's events.")
            return
        for trigger in triggers:
            tags = trigger.get("tags")
            line = Text.assemble(
                ("trigger ", "bold"),
                (str(trigger.get("id")), "cyan"),
                f"  {trigger.get('title') or ''}",
            )
            if isinstance(tags, list) and tags:
                line.append(f"  [{', '.join(str(tag) for tag in tags)}]", style="dim")
            self.out.print(line, soft_wrap=True)

    def search(self, answer: JsonObject, *, full: bool) -> None:
        if full:
            self.json(answer)
            return
        signals = answer.get("signals")
        signals = (
            [s for s in signals if isinstance(s, Mapping)] if isinstance(signals, list) else []
        )
        self.info(f"{len(signals)} match(es) for {answer.get('query', '')!r}")
        for signal in signals:
            context = " ".join(str(signal.get("context", "")).split())
            head = f"line {signal.get('line', '?')} · score {float(signal.get('score') or 0):.2f}"
            self.out.print(Text.assemble((head, "cyan"), "  ", clip(context, 200)), soft_wrap=True)

    def help(self, rows: Iterable[tuple[str, str]], keys: Iterable[tuple[str, str]]) -> None:
        table = Table(show_header=False, box=None, padding=(0, 2))
        table.add_column(style="bold cyan", no_wrap=True)
        table.add_column()
        for usage, summary in rows:  # as Text: `[prompt]` is no rich markup
            table.add_row(Text(usage), Text(summary))
        table.add_row("", "")
        for key, summary in keys:
            table.add_row(Text(key, style="bold"), summary)
        self.out.print(table)


def _runs(detail: JsonObject) -> list[JsonObject]:
    runs = detail.get("run_history")
    return [run for run in runs if isinstance(run, Mapping)] if isinstance(runs, list) else []


def _short_changes(summary: Any) -> str:
    files = _int(summary.get("files")) if isinstance(summary, Mapping) else 0
    if not files:
        return ""
    if summary.get("source") == "codex_events":
        return f"{files} file(s)"
    return f"{files} file(s) +{_int(summary.get('additions'))} -{_int(summary.get('deletions'))}"


_CHANGE_STYLES: Final = {
    "added": "green",
    "modified": "yellow",
    "deleted": "red",
    "renamed": "cyan",
}


def _status_style(status: Any) -> str:
    return {
        "completed": "green",
        "running": "yellow",
        "error": "red",
        "timeout": "red",
        "cancelled": "yellow",
        "interrupted": "yellow",
    }.get(str(status), "")
