"""`GET /overview`: what the dashboard shows beside the task table, from what the service already keeps.

Processes (each API process and worker's own report, `shared/presence.py`), the caller's tasks by state
(the sizes of the listing's indexes), each Celery queue's depth and live consumers, and the last minutes
of ended tasks per 10 s (the event streams the metrics read). Cached for a moment: a dashboard polls it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, cast

from fastapi import APIRouter, Request
from pydantic import BaseModel

from api.auth import SECURED, owner_from
from api.errors import STORE_RESPONSES, ErrorBody
from api.executors import CeleryExecutor, Executor
from api.metrics import Metrics
from shared.keys import ACTIVE, TERMINAL_BUCKETS
from shared.listing import count_running
from shared.presence import consumers, processes
from shared.store import UNREACHABLE, StatusStore

log = logging.getLogger(__name__)
_FRESH = 2.0  # seconds an answer is reused


class QueueInfo(BaseModel):
    name: str
    tasks: list[str]  # the tasks routed to it
    depth: int | None  # messages waiting (None: the broker could not tell)
    consumers: int  # live workers consuming it


class QueueWatch:
    """The Celery queues tasks are routed to, looked at once a sweep interval (for `/health` too)."""

    def __init__(self, store: StatusStore, celery: Executor | None, queues: dict[str, list[str]], every: float) -> None:
        self.store = store
        self.celery = celery if isinstance(celery, CeleryExecutor) else None
        self.queues = queues  # queue -> task names
        self.every = every
        self.status: list[QueueInfo] = []

    @property
    def without_consumer(self) -> list[str]:
        return [queue.name for queue in self.status if queue.consumers == 0]

    async def look(self) -> list[QueueInfo]:
        if self.celery is None or not self.queues:
            return []
        live = consumers(await processes(self.store))
        depths = await asyncio.gather(*(self.celery.queue_depth(name) for name in self.queues))
        self.status = [
            QueueInfo(name=name, tasks=tasks, depth=depth, consumers=live.get(name, 0))
            for (name, tasks), depth in zip(self.queues.items(), depths, strict=True)
        ]
        return self.status

    async def run_forever(self) -> None:
        while self.celery is not None and self.queues:
            try:
                await self.look()
            except UNREACHABLE as exc:
                log.debug("queues not looked at: %s", exc)
            await asyncio.sleep(self.every)


class Overview(BaseModel):
    processes: list[dict[str, Any]]
    counts: dict[str, int]  # the caller's tasks by state (kept ones: finished records expire)
    queues: list[QueueInfo]
    series: list[dict[str, float | int | None]]  # per 10 s over the last 10 minutes, oldest first
    at: float


router = APIRouter(tags=["dashboard"])
_cache: dict[str | None, tuple[float, Overview]] = {}


@router.get(
    "/overview",
    openapi_extra=SECURED,
    responses={401: {"model": ErrorBody, "description": "Missing or invalid API key"}, **STORE_RESPONSES},
)
async def overview(request: Request) -> Overview:
    """Processes, task counts by state, Celery queues and the last minutes' throughput and latencies."""
    owner = owner_from(request)
    cached = _cache.get(owner)
    if cached and time.monotonic() - cached[0] < _FRESH and cached[1].at:
        return cached[1]
    store: StatusStore = request.app.state.store
    metrics: Metrics = request.app.state.metrics
    await metrics.catch_up(store.redis, store.keys)
    watch: QueueWatch = request.app.state.queues
    found = Overview(
        processes=await processes(store),
        counts=await counts(store, owner or ""),
        queues=await watch.look(),
        series=metrics.recent.series(store.clock.now(), owner),
        at=store.clock.now(),
    )
    _cache[owner] = (time.monotonic(), found)
    return found


async def counts(store: StatusStore, owner: str) -> dict[str, int]:
    """The owner's tasks per state: one `ZCARD` per index, and the running ones from the leases."""
    keys = store.keys
    names_by_partition: list[list[bytes]] = []
    async with store.redis.pipeline(transaction=False) as pipe:
        for partition in keys.all_partitions():
            pipe.zrange(keys.names(partition, owner), 0, -1)
        names_by_partition = cast(list[list[bytes]], await pipe.execute())
    indexes = [
        (bucket, keys.index(partition, owner, name.decode(), bucket))
        for partition, names in zip(keys.all_partitions(), names_by_partition, strict=True)
        for name in names
        for bucket in (ACTIVE, *TERMINAL_BUCKETS)
    ]
    async with store.redis.pipeline(transaction=False) as pipe:
        for _, key in indexes:
            pipe.zcard(key)
        sizes = cast(list[int], await pipe.execute())
    found = {bucket: 0 for bucket in (ACTIVE, *TERMINAL_BUCKETS)}
    for (bucket, _), size in zip(indexes, sizes, strict=True):
        found[bucket] += size
    running = await count_running(store, owner)
    active = found.pop(ACTIVE)
    return {"queued": max(0, active - running), "running": running, **found}
