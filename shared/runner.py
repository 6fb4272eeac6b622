"""The one runner both executors call, so the state machine, retries, time limits and heartbeats are the same
wherever a task runs.

A short task costs one write: an *optimistic* attempt runs without writing its start first, and if it ends
within a progress interval its start and end are written together. If it runs longer, the lease keeper
(a thread) writes its start then, and a stop or another delivery that got there first stops it. Where a
task may not run twice by accident (a Celery task with one attempt, or any re-delivered message), the
start is written before the body runs, as a claim that only one delivery can win.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from dataclasses import dataclass
from typing import Any

import anyio
from pydantic_core import PydanticSerializationError, to_json

from shared.keeper import Attempt, LeaseKeeper, Phase
from shared.store import STORE_ERRORS, FinishReply, ProgressReply, StatusStore, dump_json
from shared.tasks import TaskCancelled, TaskContext, TaskRegistry, TaskSpec, UnknownTask

log = logging.getLogger(__name__)

SHUTDOWN_LOST = "LostError: the API process shut down before the task finished"
_RETRY_STORE = (0.25, 0.5, 1.0, 2.0)  # seconds between tries to store an outcome while Redis is away


@dataclass(frozen=True)
class Outcome:
    state: str
    result_json: str = "null"
    error: str | None = None
    message_json: str = ""  # the task's last message, as JSON; '' leaves the stored one


class Runner:
    """Runs one task: claim it (now or optimistically later), call it, store its outcome or retry it."""

    def __init__(
        self,
        store: StatusStore,
        registry: TaskRegistry,
        *,
        worker: str,
        keeper: LeaseKeeper,
        time_limit: float = math.inf,
        max_result_bytes: int = 1_048_576,
        optimistic: str = "always",
    ) -> None:
        self.store = store
        self.registry = registry
        self.worker = worker
        self.keeper = keeper
        self.time_limit = time_limit
        self.max_result_bytes = max_result_bytes
        self.optimistic = optimistic  # 'always', 'retryable' (tasks with max_attempts > 1) or 'never'
        self.running: set[str] = set()  # task ids this process is running now, for a graceful shutdown
        self._idle = asyncio.Event()
        self._idle.set()

    async def run(
        self, task_id: str, name: str, params_json: str, owner: str = "", *, eager: bool = False
    ) -> str | None:
        """Run it to its end; the state stored, or None if it did not run here (not queued any more)."""
        try:
            spec = self.registry.get(name)
        except UnknownTask:
            error = f"UnknownTask: no task {name!r} is registered here"
            return await self._store_end(task_id, owner, name, Outcome("failed", error=error))
        self.running.add(task_id)
        self._idle.clear()
        try:
            optimistic = not eager and (
                self.optimistic == "always" or (self.optimistic == "retryable" and spec.max_attempts > 1)
            )
            return await self._run_attempts(spec, task_id, owner, params_json, optimistic)
        finally:
            self.running.discard(task_id)
            if not self.running:
                self._idle.set()

    async def _run_attempts(
        self, spec: TaskSpec, task_id: str, owner: str, params_json: str, optimistic: bool
    ) -> str | None:
        attempt = 0 if optimistic else await self.store.claim(task_id, self.worker)
        if not optimistic and not attempt:
            log.info("task %s not started: it is no longer queued", task_id)
            return None
        while True:
            number, reply, stored = await self._attempt(spec, task_id, owner, attempt, params_json)
            if reply is not FinishReply.RETRYING:
                return stored if reply is FinishReply.ENDED else None
            delay = backoff(spec, number)
            log.info("task %s attempt %d failed; retrying in %.1f s", task_id, number, delay)
            try:
                await asyncio.sleep(delay)
            except asyncio.CancelledError:
                await self._store_end(task_id, owner, spec.name, Outcome("lost", error=SHUTDOWN_LOST))
                raise
            attempt = await self.store.claim(task_id, self.worker)
            if not attempt:
                return None

    async def _attempt(
        self, spec: TaskSpec, task_id: str, owner: str, attempt: int, params_json: str
    ) -> tuple[int, FinishReply, str | None]:
        """One attempt (0: optimistic, its start not written): (its number, how its end was stored, the state)."""
        loop = asyncio.get_running_loop()
        ctx = TaskContext(task_id, attempt or 1)
        work = asyncio.ensure_future(self._call(spec, params_json, ctx))

        def stop(reply: ProgressReply) -> None:  # from the keeper's thread
            ctx.request_stop()
            # An async task stops at its next await. A thread cannot be stopped: asked to stop, the task sees
            # ctx.cancelled and returns; no longer ours, the runner stops waiting for it (its result is void).
            if spec.is_async or reply is ProgressReply.NOT_RUNNING:
                loop.call_soon_threadsafe(work.cancel)

        tracked = Attempt(task_id, ctx, time.monotonic(), stop, attempt=attempt, started_at=self.store.now())
        tracked.phase = Phase.OPTIMISTIC if attempt == 0 else Phase.CLAIMED
        self.keeper.register(tracked)
        limit = min(spec.time_limit or math.inf, self.time_limit)
        try:
            try:
                async with asyncio.timeout(None if math.isinf(limit) else limit):
                    await work  # a timeout cancels it; so does a stop (from the keeper's thread)
            except TimeoutError:
                stop(ProgressReply.NOT_RUNNING)
                error = f"TimeLimitExceeded: attempt {tracked.attempt or 1} ran longer than {limit:g} s"
                outcome = Outcome("failed", error=error)
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is None or not current.cancelling():
                    outcome = self._outcome_of(work, ctx)  # the task was stopped, not this process
                else:  # the process is shutting down: say so rather than leave it running
                    stop(ProgressReply.NOT_RUNNING)
                    await self._end(tracked, owner, spec.name, Outcome("lost", error=SHUTDOWN_LOST), None)
                    raise
            except Exception:
                outcome = self._outcome_of(work, ctx)
            else:
                outcome = self._outcome_of(work, ctx)
            number = tracked.attempt or 1
            retry = outcome.state == "failed" and outcome.error is not None and number < spec.max_attempts
            reply, stored = await self._end(
                tracked, owner, spec.name, outcome, backoff(spec, number) if retry else None
            )
            return tracked.attempt or number, reply, stored
        finally:
            self.keeper.unregister(task_id)

    async def _call(self, spec: TaskSpec, params_json: str, ctx: TaskContext) -> Any:
        params = spec.params_model.model_validate_json(params_json)
        args = (params, ctx) if spec.takes_context else (params,)
        if spec.is_async:
            return await spec.fn(*args)
        # A thread cannot be killed: on a time limit the runner stops waiting and the task sees ctx.cancelled.
        return await anyio.to_thread.run_sync(spec.fn, *args, abandon_on_cancel=True)

    def _outcome_of(self, work: asyncio.Future[Any], ctx: TaskContext) -> Outcome:
        error = None if work.cancelled() else work.exception()
        if work.cancelled() or isinstance(error, TaskCancelled):
            return Outcome("cancelled")
        message = dump_json(ctx.message)
        if error is not None:
            return Outcome("failed", error=_error_text(error), message_json=message)
        try:
            result = to_json(work.result()).decode()
        except PydanticSerializationError as exc:
            return Outcome("failed", error=_error_text(TypeError(f"result is not JSON: {exc}")), message_json=message)
        if len(result) > self.max_result_bytes:
            too_large = f"ResultTooLarge: {len(result)} bytes of JSON, over MAX_RESULT_BYTES ({self.max_result_bytes})"
            return Outcome("failed", error=too_large, message_json=message)
        return Outcome("succeeded", result_json=result, message_json=message)

    async def _end(
        self, tracked: Attempt, owner: str, name: str, outcome: Outcome, retry_delay: float | None
    ) -> tuple[FinishReply, str | None]:
        """Store how the attempt ended, as what its phase says it is."""
        phase = await tracked.begin_finish()
        if phase is Phase.REFUSED:
            log.info("task %s: outcome %s discarded, the task was no longer ours", tracked.task_id, outcome.state)
            return FinishReply.NOT_OURS, None
        at, started_us = tracked.started_at
        started = (dump_json(self.worker), at, started_us) if phase is Phase.FINISHING else None
        attempt = tracked.attempt if phase is Phase.CLAIMED else None
        return await self._finish(tracked.task_id, owner, name, outcome, attempt, started, retry_delay)

    async def _store_end(self, task_id: str, owner: str, name: str, outcome: Outcome) -> str | None:
        """End a task that never started here."""
        reply, stored = await self._finish(task_id, owner, name, outcome, None, None, None)
        return stored if reply is FinishReply.ENDED else None

    async def _finish(
        self,
        task_id: str,
        owner: str,
        name: str,
        outcome: Outcome,
        attempt: int | None,
        started: tuple[str, str, int] | None,
        retry_delay: float | None,
    ) -> tuple[FinishReply, str | None]:
        """Store the outcome, riding out a Redis outage for as long as this process lives (its lease is kept
        alive meanwhile, so nobody takes the attempt for dead)."""
        failures = 0
        while True:
            try:
                reply, stored = await self.store.finish(
                    task_id,
                    outcome.state,
                    owner=owner,
                    name=name,
                    attempt=attempt,
                    started=started,
                    result_json=outcome.result_json,
                    error=outcome.error,
                    message_json=outcome.message_json,
                    retry_delay=retry_delay,
                )
                if reply is FinishReply.NOT_OURS:
                    log.info("task %s: outcome %s not stored, no longer ours", task_id, outcome.state)
                elif reply is FinishReply.ENDED:  # a success is not news (DEBUG); anything else is
                    log.log(logging.DEBUG if stored == "succeeded" else logging.INFO, "task %s %s", task_id, stored)
                return reply, stored or None
            except STORE_ERRORS as exc:
                delay = _RETRY_STORE[min(failures, len(_RETRY_STORE) - 1)]
                failures += 1
                if failures == 1 or failures % 30 == 0:
                    log.warning(
                        "task %s: outcome %s not stored yet, Redis unavailable: %s", task_id, outcome.state, exc
                    )
                await asyncio.sleep(delay)

    async def drain(self, grace: float) -> None:
        """Wait (at most `grace` seconds) until the runs of this process have stored their outcome."""
        with anyio.move_on_after(grace):
            await self._idle.wait()


def backoff(spec: TaskSpec, attempt: int) -> float:
    """Exponential backoff with jitter: between half and all of base * 2^(attempt-1), capped."""
    ceiling = min(spec.retry_backoff_max, spec.retry_backoff * 2 ** (attempt - 1))
    return random.uniform(ceiling / 2, ceiling)


_MAX_ERROR = 2_000  # characters of an error kept in the record


def _error_text(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}"
    return text if len(text) <= _MAX_ERROR else text[: _MAX_ERROR - 1] + "…"
