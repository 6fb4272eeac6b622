"""Events, the read side: a record as `HGETALL` (or an event) returns it, and the streams that carry changes."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

from redis.asyncio import Redis

from shared.events import KIND_FIELD
from shared.keys import EVENTS, task_events_key
from shared.store import Snapshot

_STREAM_ID = re.compile(r"\d{1,20}-\d{1,20}")
_KIND = KIND_FIELD.encode()


def valid_event_id(text: str) -> bool:
    """Whether `text` is a Redis stream id (`ms-seq`), the only `Last-Event-ID` we accept."""
    return _STREAM_ID.fullmatch(text) is not None


def event_id_key(event_id: str) -> tuple[int, int]:
    """A stream id as a tuple that sorts the way Redis orders ids."""
    ms, seq = event_id.split("-")
    return int(ms), int(seq)


@dataclass(frozen=True)
class TaskEvent:
    """One stream entry: its id, its kind (`state` or `progress`) and the record right after the change."""

    id: str
    kind: str
    snapshot: Snapshot

    @classmethod
    def from_entry(cls, entry_id: bytes, fields: Mapping[bytes, bytes]) -> TaskEvent:
        record = {name: value for name, value in fields.items() if name != _KIND}
        return cls(entry_id.decode(), fields.get(_KIND, b"state").decode(), Snapshot(record))


async def read_events(redis: Redis, stream: str, after: str | None, count: int = 500) -> list[TaskEvent]:
    """Entries strictly after `after` (from the start when None), oldest first, at most `count`."""
    start = "-" if after is None else "(" + after
    entries = cast(list[tuple[bytes, dict[bytes, bytes]]], await redis.xrange(stream, start, "+", count=count))
    return [TaskEvent.from_entry(entry_id, fields) for entry_id, fields in entries]


async def read_task_events(redis: Redis, task_id: str, after: str | None) -> list[TaskEvent]:
    return await read_events(redis, task_events_key(task_id), after)


async def read_all_events(redis: Redis, after: str) -> list[TaskEvent]:
    return await read_events(redis, EVENTS, after)


async def last_event_id(redis: Redis) -> str:
    """Where the all-tasks stream ends now ("0-0" when empty): a reader that starts here misses nothing later."""
    entries = cast(list[tuple[bytes, object]], await redis.xrevrange(EVENTS, count=1))
    return entries[0][0].decode() if entries else "0-0"


async def follow_all(redis: Redis, after: str, *, block_ms: int, count: int = 500) -> list[TaskEvent]:
    """Entries of the all-tasks stream after `after`, waiting up to `block_ms` for the first one."""
    reply = cast(
        list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]],
        await redis.xread({EVENTS: after}, block=block_ms, count=count),
    )
    return [TaskEvent.from_entry(entry_id, fields) for _, entries in reply or [] for entry_id, fields in entries]
