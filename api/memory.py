"""Stop accepting tasks before Redis is full, so the tasks already accepted can still store their outcome.

Redis at `maxmemory` with `noeviction` refuses every write that needs memory: the records of running tasks,
and the broker's own bookkeeping when the broker is the same Redis. So the API refuses new tasks (507) once
Redis uses REDIS_MEMORY_LIMIT of its `maxmemory`, reading `INFO memory` once a second, and accepts again as
soon as memory frees (finished records expire, or an operator raises `maxmemory`). Without a `maxmemory`,
there is nothing to watch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from redis.exceptions import RedisError

log = logging.getLogger(__name__)


class MemoryGuard:
    def __init__(self, redis: Any, *, limit: float, reserve: int = 3 * 1_048_576, interval: float = 1.0) -> None:
        self.redis = redis
        self.limit = limit
        self.reserve = reserve  # room a task of the largest parameters needs: below it, Redis counts as full
        self.interval = interval
        self.full = False  # above the limit at the last look (or a write was refused for memory since)
        self.usage: float | None = None  # used_memory / maxmemory at the last look; None without maxmemory
        self._room = 0.0  # bytes left under the limit at the last look, less what was admitted since

    def admit(self, size: int) -> bool:
        """Whether a task whose parameters are `size` bytes still fits, counting what was admitted since the
        last look (a task takes about three times its parameters: its record, its message, the broker's
        copy of the message while a worker holds it)."""
        if self.full:
            return False
        if self.usage is None:
            return True
        cost = 3 * size + 2_000
        if cost > self._room:
            return False
        self._room -= cost
        return True

    def refused(self) -> None:
        """A write was refused for memory: full until the next look says otherwise."""
        self.full = True

    async def look(self) -> None:
        info = await self.redis.info("memory")
        nodes = info.values() if info and all(isinstance(v, dict) for v in info.values()) else [info]
        limited = [node for node in nodes if int(node.get("maxmemory", 0) or 0) > 0]
        ratios = [int(node.get("used_memory", 0)) / int(node["maxmemory"]) for node in limited]
        self.usage = max(ratios) if ratios else None
        self._room = min(
            (self.limit * int(node["maxmemory"]) - int(node.get("used_memory", 0)) for node in limited), default=0.0
        )
        was, self.full = self.full, self.usage is not None and (self.usage >= self.limit or self._room < self.reserve)
        if self.full != was:
            log.warning(
                "Redis memory at %.0f%% of maxmemory: %s new tasks",
                100 * (self.usage or 0),
                "refusing" if self.full else "accepting again",
            )

    async def run_forever(self) -> None:
        while True:
            with contextlib.suppress(RedisError):  # unreachable: requests say so themselves (503)
                await self.look()
            await asyncio.sleep(self.interval)
