"""One clock for every process: Redis's.

Lease deadlines and record times are written in Redis's time, so a process whose own clock is wrong (or
jumps) can neither declare another's healthy work dead nor write times out of order. A process reads
Redis's `TIME` once and then counts from its monotonic clock, which never jumps; it re-reads `TIME` every
`resync` seconds (the sweeper does, as part of its loop), so no hot path pays a round trip for the time.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any


class RedisClock:
    def __init__(self, *, resync: float = 60.0) -> None:
        self.resync = resync
        self._base: float | None = None  # Redis's epoch seconds at `_mono`
        self._mono = 0.0

    @property
    def synced(self) -> bool:
        return self._base is not None and time.monotonic() - self._mono < self.resync

    async def sync(self, redis: Any) -> None:
        """Read Redis's `TIME`, taking the midpoint of the round trip as the moment it was read."""
        before = time.monotonic()
        reply = await redis.time()
        after = time.monotonic()
        if isinstance(reply, dict):  # a cluster client asks a node of its choice and says which
            reply = next(iter(reply.values()))
        seconds, micros = reply
        self._base, self._mono = int(seconds) + int(micros) / 1e6, (before + after) / 2

    async def ensure(self, redis: Any) -> None:
        if not self.synced:
            await self.sync(redis)

    def now(self) -> float:
        """Epoch seconds on Redis's clock (this process's own clock until the first sync)."""
        if self._base is None:
            return time.time()
        return self._base + (time.monotonic() - self._mono)

    def now_us(self) -> int:
        return int(self.now() * 1_000_000)

    def moment(self) -> datetime:
        return datetime.fromtimestamp(self.now(), UTC)
