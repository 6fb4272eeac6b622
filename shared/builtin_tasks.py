"""The built-in tasks: the demo, and the benchmark's workloads (their parameters and results are a contract)."""

from __future__ import annotations

import asyncio
import hashlib

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from shared.tasks import TaskContext, task

_CPU_CHUNK = 20_000  # rounds between progress reports and cancellation checks (a few ms of work)
_SLEEP_STEP = 0.25  # seconds between progress reports, well inside the promised 0.5 s


class Params(BaseModel):
    """Strict: `false` is not 0 seconds and `"5"` is not 5 rounds; a wrong type is a 422, not a guess."""

    model_config = ConfigDict(strict=True, extra="forbid")


class NoopParams(Params):
    value: JsonValue = None


class SleepParams(Params):
    seconds: float = Field(ge=0, le=3600)


class CpuParams(Params):
    rounds: int = Field(ge=1, le=100_000_000)


class FailParams(Params):
    message: str


@task("noop", max_attempts=3)
async def noop(params: NoopParams) -> dict[str, JsonValue]:
    return {"value": params.value}


@task("sleep", max_attempts=3)
async def sleep(params: SleepParams, ctx: TaskContext) -> dict[str, float]:
    """I/O-bound stand-in for the original HeavyTask; cancelling interrupts its `await`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + params.seconds
    while (remaining := deadline - loop.time()) > 0:
        done = params.seconds - remaining
        ctx.progress(done / params.seconds, f"{done:.1f} of {params.seconds:g} s")
        await asyncio.sleep(min(_SLEEP_STEP, remaining))
    ctx.progress(1.0, f"slept {params.seconds:g} s")
    return {"slept": params.seconds}


@task("cpu", max_attempts=3)
def cpu(params: CpuParams, ctx: TaskContext) -> dict[str, str | int]:
    """CPU-bound: a `def` task, so it runs in a worker thread and checks for cancellation between chunks."""
    digest, sha256, done = b"", hashlib.sha256, 0
    while done < params.rounds:
        for _ in range(min(_CPU_CHUNK, params.rounds - done)):
            digest = sha256(digest).digest()
        done = min(done + _CPU_CHUNK, params.rounds)
        ctx.progress(done / params.rounds)
        ctx.raise_if_cancelled()
    return {"digest": digest.hex(), "rounds": params.rounds}


@task("fail")
async def fail(params: FailParams) -> None:
    raise RuntimeError(params.message)
