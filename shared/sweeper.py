"""Finds tasks whose process died (their lease ran out) and re-queues them or ends them `lost`.

Every API process and every worker runs one; they may sweep at the same moment, because each expired
lease is settled by one atomic script and only the first caller gets to act on it.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

from redis.exceptions import RedisError

from shared.store import Requeue, StatusStore

log = logging.getLogger(__name__)

Requeuer = Callable[[Requeue], Awaitable[None]]


class Sweeper:
    def __init__(self, store: StatusStore, requeue: Requeuer | None, *, interval: float) -> None:
        self.store = store
        self.requeue = requeue  # None where no Celery app is configured: Celery tasks are left to a worker
        self.interval = interval

    async def sweep_once(self) -> list[tuple[str, str]]:
        """Settle every expired lease once; returns (task id, what happened) pairs."""
        settled: list[tuple[str, str]] = []
        for task_id in await self.store.expired_leases():
            outcome = await self.store.expire_lease(task_id, can_requeue=self.requeue is not None)
            if isinstance(outcome, Requeue):
                assert self.requeue is not None
                await self.requeue(outcome)
                await self.store.release_lease(task_id)
                log.warning("task %s: its worker died; re-queued", task_id)
                settled.append((task_id, "requeued"))
            elif outcome == "lost":
                log.warning("task %s: its process died; marked lost", task_id)
                settled.append((task_id, outcome))
        return settled

    async def run_forever(self) -> None:
        while True:
            try:
                await self.sweep_once()
            except RedisError as exc:
                log.warning("sweep skipped, Redis unavailable: %s", exc)
            except Exception:
                log.exception("sweep failed")
            await asyncio.sleep(self.interval * random.uniform(0.8, 1.2))
