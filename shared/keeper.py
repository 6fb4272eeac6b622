"""Keeps this process's running attempts alive in the store, from a thread of its own.

Heartbeats (lease renewals) and progress writes run here, not on the event loop that runs the tasks: an
`async def` task that blocks its loop, or a `def` task holding the GIL between switches, must not look
dead while its process lives. The thread also writes the start of an optimistic attempt (one whose start
was not written before it ran) once it has run for a progress interval, so a long task shows `running`
and holds a lease even if its event loop never yields. All due writes of a round go out in one pipeline.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from redis.exceptions import NoScriptError

from shared.store import STORE_ERRORS, ProgressReply, StatusStore
from shared.tasks import TaskContext

log = logging.getLogger(__name__)


class Phase(Enum):
    OPTIMISTIC = "optimistic"  # running, its start not written yet (it may end first: then both are written)
    CLAIMING = "claiming"  # the keeper is writing its start
    CLAIMED = "claimed"  # its start is written: `attempt` owns the task
    REFUSED = "refused"  # the start was refused: the task was cancelled, or another delivery runs it
    FINISHING = "finishing"  # the runner is writing its end; the keeper leaves it alone


@dataclass
class Attempt:
    """One attempt this process runs, shared by the runner (event loop) and the keeper (its thread)."""

    task_id: str
    ctx: TaskContext
    started: float  # monotonic
    on_stop: Callable[[ProgressReply], None]  # called (from the keeper's thread) when the attempt must stop
    phase: Phase = Phase.CLAIMED
    attempt: int = 0
    started_at: tuple[str, int] = ("", 0)  # (JSON time, µs) of the body's start, for an optimistic attempt
    written_version: int = 0
    last_write: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def begin_finish(self) -> Phase:
        """The runner is about to write the end: how to write it (after any claim in flight has landed)."""
        while True:
            with self.lock:
                if self.phase is Phase.OPTIMISTIC:
                    self.phase = Phase.FINISHING  # from now on the keeper will not write its start
                if self.phase is not Phase.CLAIMING:
                    return self.phase
            await asyncio.sleep(0.005)


class LeaseKeeper:
    """One per process; `register` an attempt when its body starts, `unregister` once its end is stored."""

    def __init__(
        self,
        make_store: Callable[[], StatusStore],
        *,
        worker: str,
        interval: float,
        heartbeat_interval: float,
    ) -> None:
        self._make_store = make_store
        self.worker = worker
        self.interval = interval
        self.heartbeat_interval = heartbeat_interval
        self._attempts: dict[str, Attempt] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def register(self, attempt: Attempt) -> None:
        with self._lock:
            self._attempts[attempt.task_id] = attempt
            if self._thread is None:
                self._thread = threading.Thread(target=self._main, name="bgt-lease-keeper", daemon=True)
                self._thread.start()

    def unregister(self, task_id: str) -> None:
        with self._lock:
            self._attempts.pop(task_id, None)

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(5)

    def _main(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        store = self._make_store()
        try:
            while not self._stopping.is_set():
                await asyncio.sleep(self.interval)
                try:
                    await self._round(store)
                except STORE_ERRORS as exc:
                    log.warning("heartbeats not stored, Redis unavailable (retrying): %s", exc)
                except Exception:
                    log.exception("heartbeat round failed")
        finally:
            await store.redis.aclose()

    async def _round(self, store: StatusStore) -> None:
        now = time.monotonic()
        with self._lock:
            attempts = list(self._attempts.values())
        for attempt in attempts:
            if attempt.phase is Phase.OPTIMISTIC and now - attempt.started >= self.interval:
                await self._claim(store, attempt)
        due = [
            a
            for a in attempts
            if a.phase is Phase.CLAIMED
            and (a.ctx.version != a.written_version or now - a.last_write >= self.heartbeat_interval)
        ]
        if not due:
            return
        await store.clock.ensure(store.redis)
        versions = [a.ctx.version for a in due]
        async with store.redis.pipeline(transaction=False) as pipe:
            for a, version in zip(due, versions, strict=True):
                progress = (a.ctx.fraction, a.ctx.message) if version != a.written_version else None
                keys, args = store.report_call(a.task_id, a.attempt, progress)
                store.scripts.report.queue(pipe, keys=keys, args=args)
            replies = await pipe.execute(raise_on_error=False)
        for a, version, reply in zip(due, versions, replies, strict=True):
            if isinstance(reply, NoScriptError):
                await store.scripts.report.load()  # Redis restarted: written next round
                continue
            if isinstance(reply, Exception):
                raise reply
            a.written_version, a.last_write = version, now
            if (answer := ProgressReply(int(reply))) is not ProgressReply.CONTINUE:
                a.on_stop(answer)

    async def _claim(self, store: StatusStore, attempt: Attempt) -> None:
        """Write the start of an attempt that has run for a progress interval without one."""
        with attempt.lock:
            if attempt.phase is not Phase.OPTIMISTIC:
                return
            attempt.phase = Phase.CLAIMING
        try:
            number = await store.claim(attempt.task_id, self.worker, started=attempt.started_at)
        except BaseException:
            with attempt.lock:
                attempt.phase = Phase.OPTIMISTIC  # tried again next round (a claim is idempotent), or ended first
            raise
        with attempt.lock:
            if number:
                attempt.phase, attempt.attempt = Phase.CLAIMED, number
                attempt.ctx.attempt = number
            else:
                attempt.phase = Phase.REFUSED
        if not number:
            attempt.on_stop(ProgressReply.NOT_RUNNING)
