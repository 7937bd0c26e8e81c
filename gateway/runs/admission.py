"""Admission: a run request checked before it may take a slot, and resolved to what it runs.

Every check that can refuse a request runs here, on every source, so a refused request never
holds a slot, a session or a process: the messages, model, timeout, workspace, images, env,
output schema, credentials, the session it continues or forks with its access rules, and the
caller's API key's restrictions (model, workspace: gateway/auth/restrictions.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.agent import codex
from gateway.agent.events import is_thread_id
from gateway.auth import principal, restrictions, tenancy
from gateway.config import MODEL_NAME, Config
from gateway.errors import InvalidRequest, SessionBusy, quote
from gateway.runs import images
from gateway.runs.childenv import check_request_env
from gateway.runs.fork import check_forkable
from gateway.runs.prompt import GlobalSystemPrompt, build_prompt, messages_or_prompt
from gateway.runs.run import Prepared, RunRequest
from gateway.runs.schema import check as check_schema
from gateway.runs.workspace import resolve_workspace
from gateway.sessions.access import SecureAccess
from gateway.sessions.model import Session
from gateway.sessions.store import SessionStore

MIN_TIMEOUT_MS = 1000
MAX_MESSAGES = 10_000
# Runs the gateway starts itself: no caller, so no API key's restrictions or quotas.
BACKGROUND_SOURCES = frozenset({"trigger", "watcher"})


class Admission:
    def __init__(
        self,
        config: Config,
        store: SessionStore,
        access: SecureAccess,
        system_prompt: GlobalSystemPrompt,
    ) -> None:
        self._config = config
        self._store = store
        self._access = access
        self._system_prompt = system_prompt

    def prepare(self, request: RunRequest) -> Prepared:
        """The request checked and resolved against its target session, or the 4xx error
        that says what is wrong; nothing is held yet."""
        messages = messages_or_prompt(request.messages, request.prompt)
        parent = self._fork_parent(request) if request.fork_of is not None else None
        if not messages and parent is None:  # a fork without a prompt runs no turn
            raise InvalidRequest("messages or prompt is required", field="messages")
        if messages and not any(message.content.strip() for message in messages):
            raise InvalidRequest("messages hold no text: give one a content", field="messages")
        if len(messages) > MAX_MESSAGES:
            raise InvalidRequest(f"at most {MAX_MESSAGES} messages", field="messages")
        model = request.model.strip() if request.model and request.model.strip() else None
        if model is not None and not MODEL_NAME.fullmatch(model):
            raise InvalidRequest(f"model is not a valid model name: {quote(model)}", field="model")
        timeout_ms = self._config.timeout_ms if request.timeout_ms is None else request.timeout_ms
        timeout_ms = min(max(timeout_ms, MIN_TIMEOUT_MS), self._config.max_timeout_ms)
        if request.resume_session_id is not None and not is_thread_id(
            request.resume_session_id.strip()
        ):  # canonical from here on: _resume_thread
            raise InvalidRequest(
                "resume_session_id must be a codex thread id (a UUID)", field="resume_session_id"
            )
        workspace = resolve_workspace(
            request.workspace,
            default=self._config.default_workspace,
            roots=self._config.workspace_roots,
        )
        checked_images = images.check(
            request.images,
            workspace,
            max_images=self._config.max_images,
            max_bytes=self._config.max_image_bytes,
        )
        env = check_request_env(request.env, self._config.request_env_allow)
        codex.check_credentials(self._config, env)
        output_schema = check_schema(request.output_schema)
        if not messages and (output_schema is not None or checked_images):
            # A fork without a prompt runs no turn: nothing would see them.
            raise InvalidRequest(
                "output_schema and images need a prompt: a fork without one runs no turn",
                field="prompt",
            )
        target = self._target_session(request)
        if request.source not in BACKGROUND_SOURCES:
            key = principal.current().key
            # The model the run will run (gateway/runs/run.py `Run.model`).
            effective = model or (target.model if target else None) or self._config.default_model
            restrictions.check_model(key, effective)
            restrictions.check_workspace(key, workspace)  # real: resolve_workspace's
        system_prompt = self._system_prompt.combine(request.system_prompt)
        return Prepared(
            request=request,
            target=target,
            messages=messages,
            prompt_text=build_prompt(system_prompt, messages) if messages else "",
            model=model,
            workspace=workspace,
            timeout_ms=timeout_ms,
            env=env,
            output_schema=output_schema,
            images=checked_images,
            parent=parent,
        )

    def _fork_parent(self, request: RunRequest) -> Session:
        """The session a fork forks: readable with the request's tokens, holding a thread, and
        not running (a turn under way is not one to copy)."""
        parent = tenancy.resolve(self._store, request.fork_of or "")
        self._access.check(parent, request.secure_tokens)
        if self._store.busy(parent):
            raise SessionBusy(parent.id)
        check_forkable(parent)
        return parent

    def _target_session(self, request: RunRequest) -> Session | None:
        if request.secure and not self._access.configured:
            raise InvalidRequest(
                "secure sessions need CODEX_GATEWAY_SECURE_TOKEN to be configured", field="secure"
            )
        session = None
        if request.session_id is not None and request.session_id.strip():
            session = tenancy.resolve(self._store, request.session_id)
            if request.secure and not session.secure:
                raise InvalidRequest(
                    "an existing session cannot be made secure; start a new one", field="secure"
                )
            self._access.check(session, request.secure_tokens)
            if self._store.busy(session):
                raise SessionBusy(session.id)
        elif request.secure:
            self._access.require(request.secure_tokens)
        if request.resume_session_id is not None:
            secure = request.secure or (session is not None and session.secure)
            self._check_resume(request.resume_thread or "", secure, request.secure_tokens)
        return session

    def _check_resume(self, thread: str, secure: bool, tokens: Sequence[str]) -> None:
        """A secure session's thread is resumed only with the secure token, into a secure
        session; a secure run does not continue a non-secure session's thread (its content
        would then be readable there without the token)."""
        owner = self._store.thread_owner(thread)
        if owner is not None:  # another tenant's session's thread: not found, as the session
            tenancy.visible(owner, thread)
        if self._store.thread_is_secure(thread):
            self._access.require(tokens)
            if not secure:
                raise InvalidRequest(
                    "this thread belongs to a secure session: resume it with secure: true",
                    field="resume_session_id",
                )
        elif secure and self._store.thread_owner(thread) is not None:
            raise InvalidRequest(
                "a secure session cannot resume the thread of a session that is not secure",
                field="resume_session_id",
            )
