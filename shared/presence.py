"""Which processes run tasks: every API process and Celery worker says so in one hash, once a sweep.

The dashboard's workers panel and the queue check read it: a queue that some task is routed to but no live
worker consumes is visible (`/health`, `/overview`) instead of silently holding tasks. Nothing per task:
one `HSET` per process per SWEEP_INTERVAL.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from shared.keys import PROCESSES
from shared.store import StatusStore

_GONE_AFTER = 3  # sweep intervals without a word: gone
_FORGET_AFTER = 3600.0  # seconds a gone process stays listed (marked gone), then it is forgotten


@dataclass
class ProcessInfo:
    name: str  # as the record's `worker` field shows it ("host:pid", or Celery's "node@host")
    kind: str  # "api" or "worker"
    executors: list[str]  # what it runs: "background" (tasks in this API process), "celery"
    queues: list[str] = field(default_factory=list)  # the Celery queues a worker consumes
    running: int = 0  # tasks it runs now
    every: float = 10.0  # seconds between its reports
    seen: float = 0.0  # epoch seconds (Redis's clock) of its last report


class Presence:
    def __init__(self, store: StatusStore, describe: Callable[[], ProcessInfo]) -> None:
        self.store = store
        self.describe = describe

    async def report(self) -> None:
        info = self.describe()
        info.seen = self.store.clock.now()
        await self.store.redis.hset(PROCESSES, info.name, json.dumps(asdict(info)))


async def processes(store: StatusStore) -> list[dict[str, Any]]:
    """Every process that reported within the last hour, newest first, each with `gone` (stopped reporting)."""
    raw: dict[bytes, bytes] = await store.redis.hgetall(PROCESSES)
    now = store.clock.now()
    out = []
    for value in raw.values():
        info = json.loads(value)
        info["gone"] = now - info["seen"] > _GONE_AFTER * info["every"]
        out.append(info)
    return sorted(out, key=lambda p: (p["gone"], p["kind"], p["name"]))


async def forget_gone(store: StatusStore) -> None:
    """Forget the processes that stopped reporting an hour ago (the sweeper's prune calls it)."""
    raw: dict[bytes, bytes] = await store.redis.hgetall(PROCESSES)
    now = store.clock.now()
    old = [name for name, value in raw.items() if now - json.loads(value)["seen"] > _FORGET_AFTER]
    if old:
        await store.redis.hdel(PROCESSES, *old)


def consumers(found: list[dict[str, Any]]) -> dict[str, int]:
    """Live workers per Celery queue."""
    counts: dict[str, int] = {}
    for info in found:
        if info["kind"] == "worker" and not info["gone"]:
            for queue in info["queues"]:
                counts[queue] = counts.get(queue, 0) + 1
    return counts
