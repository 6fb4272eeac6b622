"""One reader per process follows the event streams while someone waits, and hands each waiter the record.

A blocking read per waiting request would hold a pooled Redis connection each, and a read of the record per
waiter per change would multiply with the waiters; here one `XREAD BLOCK` loop serves every waiter of the
process, and each changed record is read once per batch, whoever waits for it (150 SSE clients of one task
cost one `GET` per change). Nobody waiting, nothing read: the reader stops after an idle grace period.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from shared.feed import Positions, TaskEvent, follow, last_positions
from shared.snapshot import Snapshot
from shared.store import STORE_ERRORS, StatusStore

log = logging.getLogger(__name__)

_BLOCK_MS = 2_000  # one XREAD BLOCK at most this long (well under REDIS_TIMEOUT, the socket timeout)
_IDLE_SECONDS = 30.0  # the reader stops once nobody has waited for this long
_RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0, 5.0)  # seconds between reads while Redis is away


class TaskWatch:
    """The newest record of one task, delivered by the hub; the waiter reads it after each wake-up."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.latest: Snapshot | None = None

    def offer(self, snapshot: Snapshot) -> None:
        if self.latest is None or snapshot.version > self.latest.version:
            self.latest = snapshot
            self._event.set()

    async def wait(self, within: float) -> Snapshot | None:
        """The newest record delivered since the last call, or None if none came within `within` seconds."""
        try:
            await asyncio.wait_for(self._event.wait(), within)
        except TimeoutError:
            return None
        self._event.clear()
        return self.latest


@dataclass(frozen=True)
class Change:
    event: TaskEvent
    snapshot: Snapshot


class Subscription:
    """Every change, in stream order, for one client of the all-tasks stream; a client far behind is dropped."""

    def __init__(self, owner: str | None, size: int) -> None:
        self.owner = owner
        self._queue: asyncio.Queue[Change | None] = asyncio.Queue(maxsize=size)
        self.overflowed = False

    def offer(self, change: Change) -> None:
        if self.overflowed or not change.event.visible_to(self.owner):
            return
        try:
            self._queue.put_nowait(change)
        except asyncio.QueueFull:
            self.overflowed = True  # the client reconnects with Last-Event-ID and catches up from the stream
            while not self._queue.empty():
                self._queue.get_nowait()
            self._queue.put_nowait(None)

    async def next(self, within: float) -> Change | None:
        """The next change; None after an overflow; TimeoutError when nothing came within `within` seconds."""
        return await asyncio.wait_for(self._queue.get(), within)


class EventHub:
    """Follows every partition's stream while there are waiters, and delivers each changed record once."""

    def __init__(
        self, store: StatusStore, *, separate_readers: bool = False, on_error: Callable[[], None] | None = None
    ) -> None:
        self.store = store
        self._separate = separate_readers  # one reader per partition (a Redis Cluster), else one for all
        self._on_error = on_error
        self._watches: dict[str, set[TaskWatch]] = {}
        self._subscriptions: set[Subscription] = set()
        self._readers: list[asyncio.Task[None]] = []
        self._starting = asyncio.Lock()
        self._closed = False

    @property
    def running(self) -> bool:
        return bool(self._readers)

    async def start(self) -> None:
        """Start reading (once); a waiter registered after this returns misses no later change."""
        async with self._starting:
            if self._readers or self._closed:
                return
            positions = await last_positions(self.store.redis, self.store.keys)
            groups = [{p: at} for p, at in positions.items()] if self._separate else [positions]
            self._readers = [asyncio.create_task(self._read(group), name="bgt-event-hub") for group in groups]

    async def close(self) -> None:
        self._closed = True
        await self._stop_readers()

    async def _stop_readers(self) -> None:
        readers, self._readers = self._readers, []
        for reader in readers:
            reader.cancel()
        if readers:
            await asyncio.wait(readers, timeout=1)  # a read cut short never holds up a shutdown

    @asynccontextmanager
    async def task_changes(self, task_id: str) -> AsyncIterator[TaskWatch]:
        """Be handed every newer record of one task while inside the block."""
        await self.start()
        watch = TaskWatch()
        self._watches.setdefault(task_id, set()).add(watch)
        try:
            yield watch
        finally:
            watches = self._watches.get(task_id, set())
            watches.discard(watch)
            if not watches:
                self._watches.pop(task_id, None)

    @asynccontextmanager
    async def all_changes(self, owner: str | None, size: int = 1_000) -> AsyncIterator[Subscription]:
        """Receive every change (of `owner`'s tasks; None: all) that happens while inside the block."""
        await self.start()
        subscription = Subscription(owner, size)
        self._subscriptions.add(subscription)
        try:
            yield subscription
        finally:
            self._subscriptions.discard(subscription)

    async def _read(self, positions: Positions) -> None:
        failures = 0
        loop = asyncio.get_running_loop()
        idle_since: float | None = None
        while not self._closed:
            if self._watches or self._subscriptions:
                idle_since = None
            elif idle_since is None:
                idle_since = loop.time()
            elif loop.time() - idle_since > _IDLE_SECONDS and await self._retire():
                return
            try:
                events = await follow(self.store.redis, self.store.keys, positions, block_ms=_BLOCK_MS)
                if events:
                    await self._deliver(events)
            except STORE_ERRORS as exc:
                if self._on_error:
                    self._on_error()
                delay = _RETRY_DELAYS[min(failures, len(_RETRY_DELAYS) - 1)]
                failures += 1
                log.warning("event stream unreadable (retrying in %s s): %s", delay, exc)
                await asyncio.sleep(delay)
                continue
            failures = 0
            for event in events:
                positions[event.partition] = event.id

    async def _retire(self) -> bool:
        """Stop this reader if nobody waits (under the start lock, so a new waiter starts a new reader)."""
        async with self._starting:
            if self._watches or self._subscriptions:
                return False
            readers, self._readers = self._readers, []  # every partition's reader stops together
            for reader in readers:
                if reader is not asyncio.current_task():
                    reader.cancel()
            return True

    async def _deliver(self, events: list[TaskEvent]) -> None:
        """Read each record that a waiter or a subscriber needs, once, and hand it over."""
        latest: dict[str, TaskEvent] = {}
        for event in events:
            if event.task_id in self._watches or any(event.visible_to(s.owner) for s in self._subscriptions):
                latest[event.task_id] = event
        if not latest:
            return
        ids = list(latest)
        snapshots = dict(zip(ids, await self.store.read_many(ids), strict=True))
        for task_id, watches in list(self._watches.items()):
            if (snapshot := snapshots.get(task_id)) is not None:
                for watch in watches:
                    watch.offer(snapshot)
        for event in events:  # in stream order, each task once: its last change in the batch, with its record
            snapshot = snapshots.get(event.task_id)
            if snapshot is not None and latest.get(event.task_id) is event:
                for subscription in self._subscriptions:
                    subscription.offer(Change(event, snapshot))
