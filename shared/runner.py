"""The one runner both executors call, so the state machine, retries, time limits and heartbeats are the same
wherever a task runs."""

from __future__ import annotations

import asyncio
import logging
import math
import random
from dataclasses import dataclass, replace
from typing import Any

import anyio
from pydantic_core import PydanticSerializationError, to_json
from redis.exceptions import RedisError

from shared.store import ProgressReply, StatusStore, dump_json
from shared.tasks import TaskCancelled, TaskContext, TaskRegistry, TaskSpec, UnknownTask

log = logging.getLogger(__name__)

SHUTDOWN_LOST = "LostError: the API process shut down before the task finished"


@dataclass(frozen=True)
class Outcome:
    state: str
    result_json: str = "null"
    error: str | None = None
    message_json: str = ""  # the task's last message, as JSON; '' leaves the stored one


class Runner:
    """Runs one task: claim it, call it, carry its progress to the store, retry or store its outcome."""

    def __init__(
        self,
        store: StatusStore,
        registry: TaskRegistry,
        *,
        worker: str,
        progress_interval: float,
        heartbeat_interval: float,
        time_limit: float = math.inf,
    ) -> None:
        self.store = store
        self.registry = registry
        self.worker = worker
        self.progress_interval = progress_interval
        self.heartbeat_interval = heartbeat_interval
        self.time_limit = time_limit
        self.running: set[str] = set()  # task ids this process is running now, for a graceful shutdown
        self._idle = asyncio.Event()
        self._idle.set()

    async def run(self, task_id: str, name: str, params_json: str) -> None:
        try:
            spec = self.registry.get(name)
        except UnknownTask:
            await self._finish(
                task_id, None, Outcome("failed", error=f"UnknownTask: no task {name!r} is registered here")
            )
            return
        self.running.add(task_id)
        self._idle.clear()
        try:
            await self._run_attempts(spec, task_id, params_json)
        finally:
            self.running.discard(task_id)
            if not self.running:
                self._idle.set()

    async def _run_attempts(self, spec: TaskSpec, task_id: str, params_json: str) -> None:
        while attempt := await self.store.start(task_id, self.worker):
            outcome = await self._attempt(spec, task_id, attempt, params_json)
            if outcome.state == "failed" and outcome.error and attempt < spec.max_attempts:
                delay = backoff(spec, attempt)
                log.info("task %s attempt %d failed (%s); retrying in %.1f s", task_id, attempt, outcome.error, delay)
                if await self.store.retry(task_id, attempt, outcome.error, delay=delay):
                    try:
                        await asyncio.sleep(delay)
                    except asyncio.CancelledError:
                        await self._finish(task_id, None, Outcome("lost", error=SHUTDOWN_LOST))
                        raise
                    continue
            await self._finish(task_id, attempt, outcome)
            return
        log.info("task %s not started: it is no longer queued", task_id)

    async def _attempt(self, spec: TaskSpec, task_id: str, attempt: int, params_json: str) -> Outcome:
        ctx = TaskContext(task_id, attempt)
        work = asyncio.ensure_future(self._call(spec, params_json, ctx))
        reporter = asyncio.ensure_future(self._report(task_id, attempt, ctx, work, spec.is_async))
        limit = min(spec.time_limit or math.inf, self.time_limit)
        try:
            done, _ = await asyncio.wait([work], timeout=None if math.isinf(limit) else limit)
        except asyncio.CancelledError:  # the process is shutting down: say so rather than leave it running
            ctx.request_stop()
            work.cancel()
            await self._finish(task_id, attempt, Outcome("lost", error=SHUTDOWN_LOST))
            raise
        finally:
            reporter.cancel()
        if not done:
            ctx.request_stop()
            work.cancel()
            return Outcome("failed", error=f"TimeLimitExceeded: attempt {attempt} ran longer than {limit:g} s")
        return replace(_outcome_of(work), message_json=dump_json(ctx.message))

    async def _call(self, spec: TaskSpec, params_json: str, ctx: TaskContext) -> Any:
        params = spec.params_model.model_validate_json(params_json)
        args = (params, ctx) if spec.takes_context else (params,)
        if spec.is_async:
            return await spec.fn(*args)
        # A thread cannot be killed: on a time limit the runner stops waiting and the task sees ctx.cancelled.
        return await anyio.to_thread.run_sync(spec.fn, *args, abandon_on_cancel=True)

    async def _report(
        self, task_id: str, attempt: int, ctx: TaskContext, work: asyncio.Future[Any], is_async: bool
    ) -> None:
        """Write progress when it changed (at most once an interval) and a heartbeat when it did not."""
        loop = asyncio.get_running_loop()
        written, last_write = 0, loop.time()
        while True:
            await asyncio.sleep(self.progress_interval)
            if ctx.version == written and loop.time() - last_write < self.heartbeat_interval:
                continue
            written, last_write = ctx.version, loop.time()
            try:
                reply = await self.store.progress(task_id, attempt, ctx.fraction, ctx.message)
            except RedisError as exc:
                log.warning("task %s: progress not stored: %s", task_id, exc)
                continue
            if reply is not ProgressReply.CONTINUE:
                ctx.request_stop()
                if is_async:
                    work.cancel()
            if reply is ProgressReply.NOT_RUNNING:
                return

    async def _finish(self, task_id: str, attempt: int | None, outcome: Outcome) -> None:
        """Store the outcome, riding out a Redis outage for up to a lease (after that the sweeper decides)."""
        progress = 1.0 if outcome.state == "succeeded" else None
        deadline = asyncio.get_running_loop().time() + self.store.lease_seconds
        delay = 0.25
        while True:
            try:
                stored = await self.store.finish(
                    task_id,
                    outcome.state,
                    attempt=attempt,
                    result_json=outcome.result_json,
                    error=outcome.error,
                    progress=progress,
                    message_json=outcome.message_json,
                )
                log.info("task %s %s%s", task_id, outcome.state, "" if stored else " (not stored: no longer ours)")
                return
            except RedisError as exc:
                if asyncio.get_running_loop().time() + delay > deadline:
                    log.error("task %s: outcome %s not stored, Redis unreachable: %s", task_id, outcome.state, exc)
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def drain(self, grace: float) -> None:
        """Wait (at most `grace` seconds) until the runs of this process have stored their outcome."""
        with anyio.move_on_after(grace):
            await self._idle.wait()


def backoff(spec: TaskSpec, attempt: int) -> float:
    """Exponential backoff with jitter: between half and all of base * 2^(attempt-1), capped."""
    ceiling = min(spec.retry_backoff_max, spec.retry_backoff * 2 ** (attempt - 1))
    return random.uniform(ceiling / 2, ceiling)


def _outcome_of(work: asyncio.Future[Any]) -> Outcome:
    error = None if work.cancelled() else work.exception()
    if work.cancelled() or isinstance(error, TaskCancelled):
        return Outcome("cancelled")
    if error is not None:
        return Outcome("failed", error=f"{type(error).__name__}: {error}")
    try:
        return Outcome("succeeded", result_json=to_json(work.result()).decode())
    except PydanticSerializationError as exc:
        return Outcome("failed", error=f"TypeError: result is not JSON: {exc}")
