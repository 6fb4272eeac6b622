"""A Celery revoke, whoever sends it (DELETE's broadcast, Flower, `celery control revoke`), ends in the record.

Celery's task_revoked signal, sent in the worker's main process, reports the revokes Celery acts on:

- a revoked message it discards instead of running (the task was queued): the record ends `cancelled`;
- a running task whose pool process it killed (`revoke --terminate`): the record ends `cancelled` at once.
  The killed attempt can never write again (writes are fenced by attempt), and the record leaves the
  leases, so the sweeper does not re-queue it.

A plain revoke of a running task is not reported: Celery lets the task run. A check on the worker's timer
finds such ids among the requests running here and asks those tasks to stop, as DELETE does; they end
`cancelled` at their next heartbeat.

The store is written on the main process's own loop (worker.factory.MainLoop): Celery's consumer, which
sends the signal, never waits on Redis. A write is retried while Redis is away, because the discarded
message is gone and the record is then all that is left to say that the task will not run.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from typing import Any

from celery.worker import state as worker_state

from shared.logs import task_logging
from shared.store import STORE_ERRORS, CancelOutcome, StatusStore

log = logging.getLogger(__name__)

_RETRY = (0.25, 0.5, 1.0, 2.0)  # seconds between tries while Redis is away


class Revocations:
    """Carries Celery's revokes to the status store, from the worker's main process."""

    def __init__(self, store: StatusStore, loop: asyncio.AbstractEventLoop) -> None:
        self.store = store
        self.loop = loop
        self._stopping: set[str] = set()  # running here, and already asked to stop for a revoke
        self._pending: set[concurrent.futures.Future[CancelOutcome | None]] = set()

    def on_revoked(self, request: Any = None, terminated: bool = False, **_: Any) -> None:
        """Celery's task_revoked signal (in the consumer's thread): hand the cancel to the loop."""
        if request is not None and request.id:
            self._cancel_soon(str(request.id), terminated=bool(terminated))

    def stop_revoked_running(self) -> None:
        """On the worker's timer: a task running here whose id Celery holds as revoked is asked to stop."""
        try:
            running = {str(request.id) for request in list(worker_state.active_requests)}
        except RuntimeError:  # changed while read (pools other than prefork run the timer in a thread): next tick
            return
        for task_id in running - self._stopping:
            if task_id in worker_state.revoked:
                self._stopping.add(task_id)
                self._cancel_soon(task_id, terminated=False)
        self._stopping &= running

    def _cancel_soon(self, task_id: str, *, terminated: bool) -> None:
        future = asyncio.run_coroutine_threadsafe(self.cancel(task_id, terminated=terminated), self.loop)
        self._pending.add(future)  # a reference until it is done
        future.add_done_callback(self._pending.discard)

    async def cancel(self, task_id: str, *, terminated: bool) -> CancelOutcome | None:
        """Cancel the record (or ask its running attempt to stop); None if there is no such task."""
        with task_logging(task_id):
            failures = 0
            while True:
                try:
                    reply = await self.store.cancel(task_id, terminated=terminated)
                    break
                except STORE_ERRORS as exc:
                    if failures % 30 == 0:
                        log.warning("task %s revoked; not recorded yet, Redis unavailable: %s", task_id, exc)
                    await asyncio.sleep(_RETRY[min(failures, len(_RETRY) - 1)])
                    failures += 1
            outcome = reply[0] if reply else None
            how = "its process killed" if terminated else "a revoke"
            log.info("task %s: %s, %s", task_id, how, outcome.value if outcome else "no such task in the store")
            return outcome
