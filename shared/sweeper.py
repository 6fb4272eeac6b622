"""Finds tasks whose process died (their lease ran out) and re-queues them or ends them; keeps the store tidy.

Every API process and every worker runs one; they may sweep at the same moment, because each expired
lease is settled by one atomic script and only the first caller gets to act on it. Two rules keep a live
attempt from being taken for dead: deadlines are judged by Redis's clock, and a sweeper acts only once it
has reached Redis continuously for a whole lease (after an outage, or at start-up), so that every living
process has had the time to renew its leases first.

Once a prune interval, one process per partition also removes the ids of expired records from the listing
indexes, forgets task names nobody uses any more, and trims the event stream by age (deleting it when
empty): once every record has expired, the store holds no key of it at all.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import cast

from shared.keys import ACTIVE, TERMINAL_BUCKETS
from shared.presence import Presence, forget_gone
from shared.store import STORE_ERRORS, Requeue, StatusStore

log = logging.getLogger(__name__)

Requeuer = Callable[[Requeue], Awaitable[None]]
_PRUNE_BATCH = 500


class Sweeper:
    def __init__(
        self,
        store: StatusStore,
        requeue: Requeuer | None,
        *,
        interval: float,
        events_age: float = 3600.0,
        grace: float | None = None,
        presence: Presence | None = None,
        resend_after: float = 1800.0,
    ) -> None:
        self.store = store
        self.requeue = requeue  # None where no Celery app is configured: Celery tasks are left to a worker
        self.interval = interval
        self.events_age = events_age
        self.grace = store.lease_seconds if grace is None else grace
        self.presence = presence  # this process's report for the workers panel, made each round
        self.resend_after = resend_after  # a Celery task queued this long has its message sent again
        self.prune_interval = min(60.0, max(1.0, interval * 6))
        self._healthy_since: float | None = None
        self._last_prune = -self.prune_interval

    async def sweep_once(self) -> list[tuple[str, str]]:
        """Settle every expired lease once; returns (task id, what happened) pairs."""
        settled: list[tuple[str, str]] = []
        for task_id in await self.store.expired_leases():
            outcome = await self.store.expire_lease(task_id, can_requeue=self.requeue is not None)
            if isinstance(outcome, Requeue):
                assert self.requeue is not None
                await self.requeue(outcome)
                await self.store.release(task_id)
                log.warning("task %s: re-queued (its worker died, or its message may never have been sent)", task_id)
                settled.append((task_id, "requeued"))
            elif outcome in ("lost", "cancelled"):
                log.warning("task %s: its process died; marked %s", task_id, outcome)
                settled.append((task_id, outcome))
        return settled

    async def tick(self) -> None:
        """One round of the loop: resync the clock, settle leases once healthy long enough, prune when due."""
        try:
            await self.store.clock.sync(self.store.redis)
        except STORE_ERRORS:
            self._healthy_since = None
            raise
        if self.presence is not None:
            await self.presence.report()
        now = time.monotonic()
        if self._healthy_since is None:
            self._healthy_since = now
        if now - self._healthy_since >= self.grace:
            await self.sweep_once()
        if now - self._last_prune >= self.prune_interval:
            self._last_prune = now
            await self.prune()

    async def run_forever(self) -> None:
        while True:
            try:
                await self.tick()
            except STORE_ERRORS as exc:
                self._healthy_since = None
                log.warning("sweep skipped, Redis unavailable: %s", exc)
            except Exception:
                log.exception("sweep failed")
            await asyncio.sleep(self.interval * random.uniform(0.8, 1.2))

    async def prune(self) -> None:
        """Tidy each partition that no other process is tidying this interval."""
        store, keys = self.store, self.store.keys
        for partition in keys.all_partitions():
            if await store.redis.set(keys.prune_lock(partition), "1", nx=True, ex=max(1, int(self.prune_interval))):
                await self._prune_indexes(partition)
                await self._trim_events(partition)
                if partition == 0:
                    await forget_gone(store)

    async def _prune_indexes(self, partition: int) -> None:
        store, keys = self.store, self.store.keys
        now = store.clock.now()
        cutoff_us = int((now - store.ttl_seconds) * 1_000_000)  # a record created later cannot have expired yet
        forget_before = now - 2 * store.register_every
        for owner, owner_score in await _members(store, keys.owners(partition)):
            names = await _members(store, keys.names(partition, owner))
            for name, name_score in names:
                for bucket in TERMINAL_BUCKETS:
                    await self._drop_expired(keys.index(partition, owner, name, bucket), cutoff_us)
                if self.requeue is not None:
                    await self._resend_long_queued(keys.index(partition, owner, name, ACTIVE), now)
                if name_score < forget_before:
                    buckets = [keys.index(partition, owner, name, b) for b in (ACTIVE, *TERMINAL_BUCKETS)]
                    if not await store.redis.exists(*buckets):
                        await store.redis.zrem(keys.names(partition, owner), name)
            if owner_score < forget_before and not await store.redis.exists(keys.names(partition, owner)):
                await store.redis.zrem(keys.owners(partition), owner)

    async def _drop_expired(self, index: str, cutoff_us: int) -> None:
        """Remove the ids of expired records from one index (only entries old enough to have expired)."""
        store, kept = self.store, 0  # kept: old entries whose record is still there (it ended late), skipped
        while True:
            ids = cast(
                list[bytes],
                await store.redis.zrangebyscore(index, "-inf", cutoff_us, start=kept, num=_PRUNE_BATCH),
            )
            if not ids:
                return
            async with store.redis.pipeline(transaction=False) as pipe:
                for task_id in ids:
                    pipe.exists(store.keys.record(task_id.decode()))
                alive = await pipe.execute()
            gone = [task_id for task_id, exists in zip(ids, alive, strict=True) if not exists]
            if gone:
                await store.redis.zrem(index, *gone)
            kept += len(ids) - len(gone)
            if len(ids) < _PRUNE_BATCH:
                return

    async def _resend_long_queued(self, index: str, now: float) -> None:
        """Lease the Celery tasks queued for RESEND (or sent again that long ago) as unsent: the next sweep sends
        their message again. The broker may have lost it; if not, the claim refuses the duplicate."""
        before_us = int((now - self.resend_after) * 1_000_000)
        old = cast(
            list[bytes], await self.store.redis.zrangebyscore(index, "-inf", before_us, start=0, num=_PRUNE_BATCH)
        )
        for task_id in old:
            if await self.store.adopt(task_id.decode(), self.resend_after):
                log.warning(
                    "task %s: queued on Celery for %.0f s; its message is sent again",
                    task_id.decode(),
                    self.resend_after,
                )

    async def _trim_events(self, partition: int) -> None:
        oldest_ms = int((self.store.clock.now() - self.events_age) * 1000)
        await self.store.scripts.trim(keys=[self.store.keys.events(partition)], args=[f"{max(0, oldest_ms)}-0"])


async def _members(store: StatusStore, key: str) -> list[tuple[str, float]]:
    pairs = cast(list[tuple[bytes, float]], await store.redis.zrange(key, 0, -1, withscores=True))
    return [(member.decode(), score) for member, score in pairs]
