"""One reader per process follows the all-tasks stream and wakes whoever waits: long-polls, SSE clients, metrics.

A blocking read per waiting request would hold a pooled Redis connection each; here a single `XREAD BLOCK`
loop serves every waiter of the process, whichever process or executor changed the record.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared.feed import TaskEvent, follow_all, last_event_id

log = logging.getLogger(__name__)

_BLOCK_MS = 5_000  # one XREAD BLOCK at most this long; an idle process costs one command per 5 s
_RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0, 5.0)  # seconds between reads while Redis is away


class Wakeup:
    """Set by the hub when the watched task changed; the waiter re-reads the record after each wake."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()

    async def wait(self, within: float) -> bool:
        """True if a change came within `within` seconds, False if not."""
        try:
            await asyncio.wait_for(self._event.wait(), within)
        except TimeoutError:
            return False
        self._event.clear()
        return True


class Subscription:
    """Every event, in stream order, for one client of the all-tasks stream; a client far behind is dropped."""

    def __init__(self, size: int) -> None:
        self._queue: asyncio.Queue[TaskEvent | None] = asyncio.Queue(maxsize=size)
        self.overflowed = False

    def offer(self, event: TaskEvent) -> None:
        if self.overflowed:
            return
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed = True  # the client reconnects with Last-Event-ID and catches up from the stream
            while not self._queue.empty():
                self._queue.get_nowait()
            self._queue.put_nowait(None)

    async def next(self, within: float) -> TaskEvent | None:
        """The next event; None after an overflow; TimeoutError when nothing came within `within` seconds."""
        return await asyncio.wait_for(self._queue.get(), within)


class EventHub:
    """Follows `bgt:events` from the moment it starts and hands each event to whoever waits for it."""

    def __init__(
        self,
        redis: Redis,
        *,
        on_event: Callable[[TaskEvent], None] | None = None,
        on_error: Callable[[], None] | None = None,
    ) -> None:
        self.redis = redis
        self._on_event = on_event
        self._on_error = on_error
        self._waiters: dict[str, set[Wakeup]] = {}
        self._subscriptions: set[Subscription] = set()
        self._reader: asyncio.Task[None] | None = None
        self._starting = asyncio.Lock()
        self._closed = False

    async def start(self) -> None:
        """Start reading (once); a waiter registered after this returns misses no later event."""
        async with self._starting:
            if self._reader is None:
                position = await last_event_id(self.redis)
                self._reader = asyncio.create_task(self._read_from(position), name="bgt-event-hub")

    async def close(self) -> None:
        self._closed = True  # a cancellation lost inside the client still ends the loop after one read
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.wait([self._reader], timeout=1)  # a read cut short never holds up a shutdown
            self._reader = None

    @asynccontextmanager
    async def task_changes(self, task_id: str) -> AsyncIterator[Wakeup]:
        """Be woken on every change of one task while inside the block."""
        await self.start()
        wakeup = Wakeup()
        self._waiters.setdefault(task_id, set()).add(wakeup)
        try:
            yield wakeup
        finally:
            waiters = self._waiters.get(task_id, set())
            waiters.discard(wakeup)
            if not waiters:
                self._waiters.pop(task_id, None)

    @asynccontextmanager
    async def all_changes(self, size: int = 1_000) -> AsyncIterator[Subscription]:
        """Receive every event that arrives while inside the block."""
        await self.start()
        subscription = Subscription(size)
        self._subscriptions.add(subscription)
        try:
            yield subscription
        finally:
            self._subscriptions.discard(subscription)

    async def _read_from(self, position: str) -> None:
        failures = 0
        while not self._closed:
            try:
                events = await follow_all(self.redis, position, block_ms=_BLOCK_MS)
            except RedisError as exc:
                if self._on_error:
                    self._on_error()
                delay = _RETRY_DELAYS[min(failures, len(_RETRY_DELAYS) - 1)]
                failures += 1
                log.warning("event stream unreadable (retrying in %s s): %s", delay, exc)
                await asyncio.sleep(delay)
                continue
            failures = 0
            for event in events:
                position = event.id
                self._dispatch(event)

    def _dispatch(self, event: TaskEvent) -> None:
        for wakeup in self._waiters.get(event.snapshot.task_id, ()):
            wakeup.notify()
        for subscription in self._subscriptions:
            subscription.offer(event)
        if self._on_event:
            try:
                self._on_event(event)
            except Exception:
                log.exception("event %s could not be counted", event.id)
