"""The one runner both executors call, so the state machine is the same wherever a task runs."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import anyio
from pydantic_core import PydanticSerializationError, to_json
from redis.exceptions import RedisError

from shared.store import ProgressReply, StatusStore
from shared.tasks import TaskCancelled, TaskContext, TaskRegistry, TaskSpec, UnknownTask

log = logging.getLogger(__name__)

_FINISH_RETRIES = (0.5, 1, 2, 4, 8)  # seconds between tries to store an outcome while Redis is away


class Runner:
    """Runs one task: claim it, call it, carry its progress to the store, store its outcome."""

    def __init__(
        self,
        store: StatusStore,
        registry: TaskRegistry,
        *,
        worker: str,
        progress_interval: float,
        heartbeat_interval: float,
    ) -> None:
        self.store = store
        self.worker = worker
        self.registry = registry
        self.progress_interval = progress_interval
        self.heartbeat_interval = heartbeat_interval

    async def run(self, task_id: str, name: str, params_json: str) -> None:
        try:
            spec = self.registry.get(name)
        except UnknownTask:
            await self._finish(task_id, "failed", error=f"UnknownTask: no task {name!r} is registered here")
            return
        if not await self.store.start(task_id, self.worker):
            log.info("task %s not started: it is no longer queued", task_id)
            return
        ctx = TaskContext(task_id)
        work = asyncio.ensure_future(self._call(spec, params_json, ctx))
        reporter = asyncio.ensure_future(self._report(task_id, ctx, work, spec.is_async))
        try:
            await asyncio.wait([work])
        finally:
            reporter.cancel()
            work.cancel()
        await self._store_outcome(task_id, work)

    async def _call(self, spec: TaskSpec, params_json: str, ctx: TaskContext) -> Any:
        params = spec.params_model.model_validate_json(params_json)
        args = (params, ctx) if spec.takes_context else (params,)
        if spec.is_async:
            return await spec.fn(*args)
        return await anyio.to_thread.run_sync(spec.fn, *args)

    async def _report(self, task_id: str, ctx: TaskContext, work: asyncio.Future[Any], is_async: bool) -> None:
        """Write progress when it changed (at most once an interval) and a heartbeat when it did not."""
        loop = asyncio.get_running_loop()
        written, last_write = 0, loop.time()
        while True:
            await asyncio.sleep(self.progress_interval)
            if ctx.version == written and loop.time() - last_write < self.heartbeat_interval:
                continue
            written, last_write = ctx.version, loop.time()
            try:
                reply = await self.store.progress(task_id, ctx.fraction, ctx.message)
            except RedisError as exc:
                log.warning("task %s: progress not stored: %s", task_id, exc)
                continue
            if reply is not ProgressReply.CONTINUE:
                ctx.request_stop()
                if is_async:
                    work.cancel()
            if reply is ProgressReply.NOT_RUNNING:
                return

    async def _store_outcome(self, task_id: str, work: asyncio.Future[Any]) -> None:
        error = None if work.cancelled() else work.exception()
        if work.cancelled() or isinstance(error, TaskCancelled):
            await self._finish(task_id, "cancelled")
        elif error is not None:
            await self._finish(task_id, "failed", error=f"{type(error).__name__}: {error}")
        else:
            try:
                result_json = to_json(work.result()).decode()
            except PydanticSerializationError as exc:
                await self._finish(task_id, "failed", error=f"TypeError: result is not JSON: {exc}")
            else:
                await self._finish(task_id, "succeeded", result_json=result_json, progress=1.0)

    async def _finish(self, task_id: str, state: str, **outcome: Any) -> None:
        """Store the outcome, riding out a short Redis outage rather than losing it."""
        for delay in (*_FINISH_RETRIES, None):
            try:
                await self.store.finish(task_id, state, **outcome)
                log.info("task %s %s", task_id, state)
                return
            except RedisError as exc:
                if delay is None:
                    log.error("task %s: outcome %s lost, Redis unreachable: %s", task_id, state, exc)
                    return
                await asyncio.sleep(delay)
