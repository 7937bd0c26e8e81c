"""API keys' cost per request (issue 17): authentication and accounting with 10,000 keys
configured, against the single-token path; target: at most 0.05 ms more at the p50.

What is timed is the gateway's own code a request goes through, in process, each call on its
own: the key check (`KeyCheck.intercept_service`: the bearer read, SHA-256, one dict lookup, the
constant-time comparison, the scope, the handler wrapped to bind the caller), then, inside that
handler as the runner does it, the caller's restrictions (model, workspace resolved) and its
quota place taken and given back (`KeyQuotas.take`); the workspace is the real path admission
has already resolved. With the token only, the same path runs
with a one-key set and the admin key (no restrictions, no quota). A 50 us difference is far
below what an end-to-end completion's p50 moves from one measurement to the next on a shared
machine (bench/completion.py's overhead rows), so the figure is taken where it arises.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import grpc

from bench.results import Result, latency_summary, percentile
from bench.sizes import Context
from gateway.auth import principal, restrictions
from gateway.auth.gatekeeper import KeyCheck
from gateway.auth.keys import KeySet, digest_of, parse_document
from gateway.auth.quotas import KeyQuotas

KEYS: Final = 10_000
TARGET_US: Final = 50.0
METHOD: Final = "/codex_gateway.v1.GatewayService/Complete"
MODEL: Final = "gpt-bench"
ROUNDS: Final = 10


@dataclass(frozen=True)
class _Details(grpc.HandlerCallDetails):
    method: str
    invocation_metadata: tuple[tuple[str, str], ...]


def _key_set(root: Path) -> tuple[KeySet, str]:
    """10,000 keys, each with a quota and restrictions; the secret of the last one."""
    entries = [
        {
            "name": f"key-{n}",
            "sha256": digest_of(f"secret-{n}").hex(),
            "tenant": f"team-{n % 100}",
            "scopes": ["read", "run"],
            "max_concurrent": 4,
            "runs_per_minute": 1_000_000,
            "allowed_models": [MODEL, "gpt-other"],
            "workspace_roots": [str(root)],
        }
        for n in range(KEYS)
    ]
    return parse_document({"keys": entries}, roots=(root,)), f"secret-{KEYS - 1}"


def _path(keys: KeySet, secret: str, workspace: Path) -> Callable[[], Awaitable[None]]:
    """One request's authentication and accounting, as the gateway runs it."""
    check = KeyCheck(lambda: keys, open_methods=frozenset())
    quotas = KeyQuotas()

    async def servicer(request: Any, context: Any) -> None:
        key = principal.current().key  # bound by the key check's wrapper
        restrictions.check_model(key, MODEL)
        restrictions.check_workspace(key, workspace)
        release = await quotas.take(key)
        if release is not None:
            await release()  # the run's end

    handler = grpc.unary_unary_rpc_method_handler(servicer)

    async def continuation(details: grpc.HandlerCallDetails) -> Any:
        return handler

    details = _Details(METHOD, (("authorization", f"Bearer {secret}"),))

    async def call() -> None:
        wrapped = await check.intercept_service(continuation, details)
        behaviour: Any = wrapped.unary_unary  # the stubs type it synchronous; aio's is a coroutine
        await behaviour(None, None)

    return call


async def _timed(call: Callable[[], Awaitable[None]], count: int, into: list[int]) -> None:
    for _ in range(count):
        start = time.perf_counter_ns()
        await call()
        into.append(time.perf_counter_ns() - start)


async def auth_cost(ctx: Context) -> list[Result]:
    iterations = max(20_000, ctx.sizes.iterations * 50)
    with tempfile.TemporaryDirectory() as tmp:
        workspace = _real(tmp)
        many, secret = _key_set(workspace)
        paths = {
            "token": _path(KeySet.of_token("the-token"), "the-token", workspace),
            "keys": _path(many, secret, workspace),
        }
        samples: dict[str, list[int]] = {name: [] for name in paths}
        for call in paths.values():
            await _timed(call, 1000, [])  # warm-up
        for _ in range(ROUNDS):  # interleaved: drift touches both alike
            for name, call in paths.items():
                await _timed(call, iterations // ROUNDS, samples[name])
                await asyncio.sleep(0)
    stats = {name: latency_summary(values) for name, values in samples.items()}
    p50 = {name: _p50_us(values) for name, values in samples.items()}
    ctx.log(f"auth: p50 us {p50}; {stats}")
    return [
        Result(
            f"API keys cost p50 ({KEYS:,} keys, quota + restrictions - token only)",
            "us",
            round(p50["keys"] - p50["token"], 2),
            TARGET_US,
            baseline=p50["token"],
            baseline_label="token-only path p50",
            details={"iterations": iterations, "p50_us": p50, "latency_ms": stats},
        )
    ]


def _real(path: str) -> Path:
    return Path(path).resolve()


def _p50_us(samples_ns: list[int]) -> float:
    return round(percentile(samples_ns, 50) / 1000, 2)
