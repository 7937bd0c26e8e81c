"""The file watcher: a change under a watched folder that matches the glob starts a run.

Events come from the OS through watchfiles, or from polling when CODEX_GATEWAY_WATCH_USE_WATCHDOG
asks for it (the reference's Python monitor used watchdog's polling observer) or when watchfiles
finds the filesystem needs it. The glob is matched against the path relative to its watch root
(`**` spans folders, `*` and `?` stay inside one). Changes are debounced per file (trailing edge):
a burst of writes to one file starts one run. Each run goes through the runner and its
concurrency limit, waiting for a slot, never dropped. A path that resolves outside its root
(a symlink leaving it) is ignored, and so is anything but a regular file (a FIFO, a socket, a
device): files are only ever opened through gateway/regular_file.py, in a worker thread, and at
most the first bytes the prompt shows are read.
"""

from __future__ import annotations

import asyncio
import logging
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import watchfiles

from gateway import regular_file
from gateway.clock import iso, system_clock
from gateway.config import WatcherConfig
from gateway.errors import GatewayError, quote
from gateway.runs.run import RunRequest
from gateway.runs.runner import Runner

log = logging.getLogger(__name__)

CONTENT_CHARS = 4000
_SNIFF_BYTES = 8192
# The prompt template file (CODEX_GATEWAY_WATCH_PROMPT_FILE) is read whole: a template, not data.
MAX_TEMPLATE_BYTES = 1024 * 1024
_EVENTS = {
    watchfiles.Change.added: ("add", "created"),
    watchfiles.Change.modified: ("change", "modified"),
    watchfiles.Change.deleted: ("delete", "deleted"),
}


def compile_glob(pattern: str) -> re.Pattern[str]:
    """A glob over '/'-separated relative paths: `**/` is any number of folders (none too),
    a trailing `**` anything, `*` and `?` never cross a '/', `[...]` a character class."""
    pattern = pattern.strip().lstrip("/") or "**"
    out = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:[^/]+/)*")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif char == "*":
            out.append("[^/]*")
            i += 1
        elif char == "?":
            out.append("[^/]")
            i += 1
        elif char == "[" and (end := pattern.find("]", i + 2)) > 0:
            body = pattern[i + 1 : end]
            negate = body.startswith("!")
            body = re.escape(body[1:] if negate else body).replace("\\-", "-")
            out.append(f"[{'^' if negate else ''}{body}]")
            i = end + 1
        else:
            out.append(re.escape(char))
            i += 1
    return re.compile("".join(out), re.DOTALL)


def matches(glob: re.Pattern[str], relative: str) -> bool:
    return glob.fullmatch(relative) is not None


_VARIABLE = re.compile(r"\{\{\s*([A-Za-z_]+)\s*\}\}")


def render(template: str, values: dict[str, str]) -> str:
    """Replace `{{ name }}` (any case, spaces allowed); unknown names become empty."""
    lowered = {k.lower(): v for k, v in values.items()}
    return _VARIABLE.sub(lambda m: lowered.get(m.group(1).lower(), ""), template)


DEFAULT_TEMPLATE = """A file event was observed by the gateway watcher.
Event: {{event}}
Absolute path: {{path}}
Relative path: {{relative}}
Modified: {{mtime}}
Size: {{size}} bytes
---
{{content}}
"""


def describe_file(path: Path) -> tuple[str, str, str]:
    """(content for the prompt, mtime ISO, size) of a file; binary files are described.

    Blocking: call it off the loop. Only a regular file is opened (never waiting on a FIFO,
    never through a symlink: pass the resolved path), and only its first bytes are read."""
    try:
        found = regular_file.head(path, CONTENT_CHARS * 4 + 4)
    except regular_file.NotRegularFile as exc:
        return f"No content available (not a regular file: {exc.reason}).", "", ""
    except OSError:
        return "No content available (missing or unreadable).", "", ""
    head, size = found.data, found.size
    mtime = iso(datetime.fromtimestamp(found.mtime, UTC), timespec="auto")
    if b"\0" in head[:_SNIFF_BYTES]:
        return f"Binary file ({size} bytes), content not shown.", mtime, str(size)
    try:
        text = head.decode()
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a character cut at the read boundary
            return (f"Binary file ({size} bytes), content not shown.", mtime, str(size))
        text = head[: exc.start].decode()
    if len(text) > CONTENT_CHARS or size > len(head):
        shown = text[:CONTENT_CHARS] + f"\n...[truncated, {size} bytes in all]"
        return "File content (truncated):\n" + shown, mtime, str(size)
    return "File content:\n" + text, mtime, str(size)


@dataclass
class WatchStatus:
    enabled: bool = False
    paths: list[str] = field(default_factory=list)
    watcher_count: int = 0
    events_seen: int = 0
    runs_started: int = 0
    last_event: dict[str, Any] | None = None
    last_error: str | None = None


class FileWatcher:
    def __init__(
        self, config: WatcherConfig, runner: Runner, *, clock: Callable[[], datetime] | None = None
    ) -> None:
        self._config = config
        self._runner = runner
        self._glob = compile_glob(config.pattern)
        self._template = DEFAULT_TEMPLATE
        self.status = WatchStatus()
        self._pending: dict[Path, tuple[asyncio.TimerHandle, str]] = {}
        self._runs: set[asyncio.Task[None]] = set()
        self._roots: list[Path] = []
        self._clock = clock or system_clock

    @property
    def mode(self) -> str:
        return "polling" if self._config.force_polling else "os"

    def _prepare(self) -> None:
        roots = []
        for path in self._config.paths:
            if path.is_dir():
                roots.append(path.resolve())
            else:
                log.warning("watch path %s does not exist or is not a folder: skipped", path)
        self._roots = roots
        self.status.paths = [str(r) for r in roots]
        self.status.watcher_count = len(roots)
        self.status.enabled = bool(roots)
        prompt_file = self._config.prompt_file
        if prompt_file is not None:
            try:
                raw = regular_file.read(prompt_file, MAX_TEMPLATE_BYTES, follow=True)
                self._template = raw.decode("utf-8", errors="replace")
            except regular_file.NotRegularFile as exc:
                self.status.last_error = f"prompt file unusable, using the default: {exc}"
                log.warning("%s", self.status.last_error)
            except OSError as exc:
                self.status.last_error = (
                    f"prompt file unreadable, using the default: {exc.strerror}"
                )

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.to_thread(self._prepare)
        if not self._roots:
            await stop.wait()
            return
        if not self._config.skip_initial_scan:
            for root in self._roots:
                found = await asyncio.to_thread(_files_under, root)
                for path in found:
                    self.observe(root, path, watchfiles.Change.added)
        try:
            async for changes in watchfiles.awatch(
                *self._roots,
                stop_event=stop,
                debounce=50,
                step=20,
                force_polling=True if self._config.force_polling else None,
                poll_delay_ms=self._config.poll_ms,
                recursive=True,
                rust_timeout=1000,
            ):
                for change, raw in sorted(changes, key=lambda c: c[1]):
                    changed = Path(raw)
                    owner = next((r for r in self._roots if changed.is_relative_to(r)), None)
                    if owner is not None:
                        self.observe(owner, changed, change)
        except (OSError, RuntimeError) as exc:
            self.status.last_error = f"watching stopped: {exc}"
            log.error("the file watcher stopped: %s", exc)
            await stop.wait()
        finally:
            for handle, _ in self._pending.values():
                handle.cancel()
            self._pending.clear()
            for task in list(self._runs):
                task.cancel()

    def observe(self, root: Path, path: Path, change: watchfiles.Change) -> None:
        """One raw change: filter it, then (re)start its file's debounce timer."""
        if path.is_dir():
            if change == watchfiles.Change.added:
                # Files written right after their folder was made can beat the OS watch of
                # that folder: look inside a new folder ourselves (the debounce merges doubles).
                for inner in sorted(path.rglob("*")):
                    if inner.is_file():
                        self.observe(root, inner, watchfiles.Change.added)
            return
        relative = path.relative_to(root).as_posix()
        if not matches(self._glob, relative):
            return
        if change != watchfiles.Change.deleted:
            try:
                if not path.resolve().is_relative_to(root):
                    return  # a symlink out of the watch root
                mode = path.stat().st_mode  # stat never blocks, whatever the file is
            except (OSError, RuntimeError):
                return
            if not stat.S_ISREG(mode):
                log.info("watcher: ignoring %s: not a regular file", quote(relative))
                return
        self.status.events_seen += 1
        event = _EVENTS.get(change, ("change", "modified"))[0]
        previous = self._pending.pop(path, None)
        if previous is not None:
            previous[0].cancel()
            if previous[1] == "add" and event == "change":
                event = "add"  # created then written: still a new file
        loop = asyncio.get_running_loop()
        handle = loop.call_later(self._config.debounce_ms / 1000, self._settled, root, path, event)
        self._pending[path] = (handle, event)

    def _settled(self, root: Path, path: Path, event: str) -> None:
        self._pending.pop(path, None)
        if event != "delete" and not path.exists():
            event = "delete"
        task = asyncio.create_task(self._start_run(root, path, event))
        self._runs.add(task)
        task.add_done_callback(self._runs.discard)

    async def prompt_for(self, root: Path, path: Path, event: str) -> str:
        content, mtime, size = ("", "", "")
        if event != "delete":
            content, mtime, size = await asyncio.to_thread(_describe_inside, root, path)
        else:
            content = "No content available (the file was deleted)."
        values = {
            "file": str(path),
            "filename": path.name,
            "container_path": str(path),
            "event_type": dict(_EVENTS.values()).get(event, event),
            "event": event,
            "path": str(path),
            "relative": path.relative_to(root).as_posix(),
            "mtime": mtime,
            "size": size,
            "content": content,
        }
        return render(self._template, values)

    async def _start_run(self, root: Path, path: Path, event: str) -> None:
        prompt = await self.prompt_for(root, path, event)
        self.status.last_event = {
            "event": event,
            "path": str(path),
            "relative": path.relative_to(root).as_posix(),
            "at": iso(self._clock(), timespec="auto"),
        }
        self.status.runs_started += 1
        request = RunRequest(
            source="watcher",
            prompt=prompt,
            metadata={"watch_event": {"event": event, "path": str(path)}},
        )
        try:
            await self._runner.run(request, wait_for_slot=True)
        except GatewayError as exc:
            self.status.last_error = f"{path}: {exc.message}"
            log.warning("watcher run for %s failed: %s", path, exc.message)


def _files_under(root: Path) -> list[Path]:
    """The regular files below `root`, sorted (blocking: the initial scan, off the loop)."""
    return sorted(path for path in root.rglob("*") if path.is_file())


def _describe_inside(root: Path, path: Path) -> tuple[str, str, str]:
    """describe_file of `path` resolved, if it still lies inside `root` (checked again here:
    the link may have changed since the event); its last component is then opened no-follow."""
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError):
        return "No content available (missing or unreadable).", "", ""
    if not resolved.is_relative_to(root):
        return "No content available (the path leads out of the watched folder).", "", ""
    return describe_file(resolved)
