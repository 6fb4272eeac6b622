"""`GET /tasks`: newest first, filtered by state and name, at a cost that does not grow with the tasks kept.

Every task is in exactly one index: its owner's, for its name, in its bucket (`active` while queued or
running, else its terminal state), scored by creation time. A page is a merge of the few indexes the filter
selects (names x buckets x partitions), each read from the cursor on, so a filter that matches nothing
costs one read per index. Only `running` is different: the running tasks are the ones holding a lease, a
set bounded by how many tasks can run at once, so they are read from there.
"""

from __future__ import annotations

import base64
import binascii
import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

from shared.keys import ACTIVE, TERMINAL_BUCKETS
from shared.snapshot import INDEX, Snapshot
from shared.store import StatusStore

MAX_PAGE_BYTES = 4 * 1024 * 1024  # a page stops early (with a cursor) rather than hold more records than this
_CREATED = INDEX["created_us"]


@dataclass(frozen=True, order=True)
class Cursor:
    """Where a page ended: the last item's creation time (µs) and id; the next page starts strictly after."""

    score: int
    task_id: str

    def encode(self) -> str:
        return base64.urlsafe_b64encode(f"{self.score}:{self.task_id}".encode()).decode()

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            score, task_id = base64.urlsafe_b64decode(text.encode()).decode().split(":", 1)
            value = float(score)
            if not math.isfinite(value) or not task_id:
                raise ValueError("not a position")
            return cls(int(value), task_id)
        except (ValueError, binascii.Error, UnicodeDecodeError, OverflowError) as exc:
            raise ValueError("invalid cursor") from exc


@dataclass
class _Source:
    """One index read newest first, strictly after the page's starting cursor, a batch at a time."""

    key: str
    batch: int
    entries: list[tuple[int, str]] = field(default_factory=list)
    offset: int = 0  # entries read so far from the cursor's score down (a fixed starting point)
    exhausted: bool = False

    @property
    def dry(self) -> bool:
        return not self.entries and not self.exhausted


@dataclass(frozen=True)
class Page:
    items: list[bytes]
    next_cursor: Cursor | None


async def list_page(
    store: StatusStore,
    *,
    owner: str,
    state: str | None = None,
    name: str | None = None,
    limit: int = 50,
    cursor: Cursor | None = None,
) -> Page:
    """One page of the owner's records, newest first."""
    if state == "running":
        return await _running(store, owner, name, limit, cursor)
    names = [name] if name is not None else await _names(store, owner)
    buckets = [ACTIVE, *TERMINAL_BUCKETS] if state is None else [ACTIVE if state == "queued" else state]
    keys = store.keys
    sources = [
        _Source(keys.index(partition, owner, task_name, bucket), limit + 1)
        for partition in keys.all_partitions()
        for task_name in names
        for bucket in buckets
    ]
    wanted = state.encode() if state == "queued" else None
    found: list[tuple[Cursor, bytes]] = []
    size = 0
    while len(found) <= limit and size < MAX_PAGE_BYTES:
        candidates = await _next_candidates(store, sources, cursor, limit + 1 - len(found))
        if not candidates:
            break
        records = await store.read_many([c.task_id for c in candidates])
        for position, snapshot in zip(candidates, records, strict=True):
            if snapshot is None or (wanted is not None and snapshot.raw("state") != b'"' + wanted + b'"'):
                continue
            found.append((position, snapshot.json))
            size += len(snapshot.json)
    return _page(found, limit, truncated=size >= MAX_PAGE_BYTES)


async def _names(store: StatusStore, owner: str) -> list[str]:
    async with store.redis.pipeline(transaction=False) as pipe:
        for partition in store.keys.all_partitions():
            pipe.zrange(store.keys.names(partition, owner), 0, -1)
        replies = cast(list[list[bytes]], await pipe.execute())
    return sorted({member.decode() for members in replies for member in members})


async def _fill(store: StatusStore, sources: Sequence[_Source], start: Cursor | None) -> None:
    """Read the next batch of every source that ran dry (one round trip per round), until none is dry."""
    top: int | str = "+inf" if start is None else start.score
    while dry := [source for source in sources if source.dry]:
        async with store.redis.pipeline(transaction=False) as pipe:
            for source in dry:
                pipe.zrange(
                    source.key,
                    top,
                    "-inf",
                    desc=True,
                    byscore=True,
                    offset=source.offset,
                    num=source.batch,
                    withscores=True,
                )
            replies = cast(list[list[tuple[bytes, float]]], await pipe.execute())
        for source, raw in zip(dry, replies, strict=True):
            source.offset += len(raw)
            source.exhausted = len(raw) < source.batch
            entries = [(int(score), member.decode()) for member, score in raw]
            if start is not None:  # entries tied with the cursor's score come after it only if their id is lower
                entries = [entry for entry in entries if entry < (start.score, start.task_id)]
            source.entries = sorted(entries, reverse=True)


async def _next_candidates(
    store: StatusStore, sources: Sequence[_Source], start: Cursor | None, count: int
) -> list[Cursor]:
    """The next `count` index entries across all sources, newest first."""
    out: list[Cursor] = []
    while len(out) < count:
        await _fill(store, sources, start)  # a source that ran dry may hold the next newest entry
        live = [source for source in sources if source.entries]
        if not live:
            break
        newest = max(live, key=lambda source: source.entries[0])
        score, task_id = newest.entries.pop(0)
        out.append(Cursor(score, task_id))
    return out


async def _running_now(store: StatusStore, owner: str, name: str | None = None) -> list[Snapshot]:
    """The owner's running tasks: the leased ones (a bounded set) whose record says `running`."""
    keys = store.keys
    async with store.redis.pipeline(transaction=False) as pipe:
        for partition in keys.all_partitions():
            pipe.zrange(keys.leases(partition), 0, -1)
        replies = cast(list[list[bytes]], await pipe.execute())
    ids = [member.decode() for members in replies for member in members]
    return [
        snapshot
        for snapshot in await store.read_many(ids)
        if snapshot is not None
        and snapshot.state == "running"
        and snapshot.owner == owner
        and (name is None or snapshot.name == name)
    ]


async def count_running(store: StatusStore, owner: str) -> int:
    return len(await _running_now(store, owner))


async def _running(store: StatusStore, owner: str, name: str | None, limit: int, cursor: Cursor | None) -> Page:
    running: list[tuple[Cursor, Snapshot]] = []
    for snapshot in await _running_now(store, owner, name):
        position = Cursor(int(snapshot.parts[_CREATED]), snapshot.task_id)
        if cursor is None or position < cursor:
            running.append((position, snapshot))
    newest = heapq.nlargest(limit + 1, running, key=lambda pair: pair[0])
    return _page([(position, snapshot.json) for position, snapshot in newest], limit)


def _page(found: list[tuple[Cursor, bytes]], limit: int, *, truncated: bool = False) -> Page:
    more = len(found) > limit or truncated
    page = found[:limit]
    return Page([record for _, record in page], page[-1][0] if more and page else None)
