"""The event streams, read side: one small entry per change of a task, one stream per partition.

An entry says which task changed, to which version, the kind of change (`state` or `progress`) and the few
fields metrics and filters need (state, executor, owner, name, and the times in µs); never the record, which
readers fetch once per batch when someone needs it (a waiting long-poll, an SSE client, the dashboard).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, cast

from shared.keys import Keyspace

_STREAM_ID = re.compile(r"(\d{1,20})-(\d{1,20})")
_KINDS = {b"s": "state", b"p": "progress", b"r": "state"}
_UINT64 = 2**64


def parse_event_id(text: str) -> tuple[int, int] | None:
    """A Redis stream id (`ms-seq`, both within 64 bits) as a sortable tuple, or None if it is not one."""
    match = _STREAM_ID.fullmatch(text)
    if match is None:
        return None
    ms, seq = int(match.group(1)), int(match.group(2))
    return (ms, seq) if ms < _UINT64 and seq < _UINT64 else None


@dataclass(frozen=True)
class TaskEvent:
    """One entry of a partition's stream."""

    id: str
    partition: int
    task_id: str
    version: int
    kind: str
    state: str
    executor: str
    owner: str
    name: str
    created_us: int
    started_us: int
    at_us: int
    with_start: bool = False  # its start was written with this change (a short task): it entered `running` too

    @property
    def position(self) -> tuple[int, int]:
        ms, _, seq = self.id.partition("-")
        return int(ms), int(seq)

    @property
    def terminal(self) -> bool:
        return self.state in ("succeeded", "failed", "cancelled", "lost")

    def visible_to(self, owner: str | None) -> bool:
        return owner is None or self.owner == owner

    @classmethod
    def from_entry(cls, partition: int, entry_id: bytes, fields: dict[bytes, bytes]) -> TaskEvent:
        return cls(
            id=entry_id.decode(),
            partition=partition,
            task_id=fields[b"i"].decode(),
            version=int(fields[b"v"]),
            kind=_KINDS.get(fields[b"k"], "state"),
            state=fields[b"s"].decode(),
            executor=fields[b"e"].decode(),
            owner=fields[b"o"].decode(),
            name=fields[b"n"].decode(),
            created_us=int(fields[b"c"]),
            started_us=int(fields[b"b"]),
            at_us=int(fields[b"t"]),
            with_start=fields[b"k"] == b"r",
        )


Positions = dict[int, str]  # partition -> the last stream id read there


async def last_positions(redis: Any, keys: Keyspace) -> Positions:
    """Where every partition's stream ends now ("0-0" when empty): reading from here misses nothing later."""
    async with redis.pipeline(transaction=False) as pipe:
        for partition in keys.all_partitions():
            pipe.xrevrange(keys.events(partition), count=1)
        replies = cast(list[list[tuple[bytes, Any]]], await pipe.execute())
    return {
        p: (entries[0][0].decode() if entries else "0-0")
        for p, entries in zip(keys.all_partitions(), replies, strict=True)
    }


async def read_after(redis: Any, keys: Keyspace, positions: Positions, count: int = 500) -> list[TaskEvent]:
    """Up to `count` entries per partition strictly after `positions`, each partition in order (no waiting)."""
    async with redis.pipeline(transaction=False) as pipe:
        for partition, after in positions.items():
            pipe.xrange(keys.events(partition), "(" + after, "+", count=count)
        replies = cast(list[list[tuple[bytes, dict[bytes, bytes]]]], await pipe.execute())
    return [
        TaskEvent.from_entry(partition, entry_id, fields)
        for partition, entries in zip(positions, replies, strict=True)
        for entry_id, fields in entries
    ]


async def follow(
    redis: Any, keys: Keyspace, positions: Positions, *, block_ms: int, count: int = 500
) -> list[TaskEvent]:
    """Entries after `positions` (partitions of one Redis node), waiting up to `block_ms` for the first."""
    streams = {keys.events(partition): after for partition, after in positions.items()}
    partition_of = {keys.events(partition): partition for partition in positions}
    reply = cast(
        list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]] | None,
        await redis.xread(streams, block=block_ms, count=count),
    )
    return [
        TaskEvent.from_entry(partition_of[stream.decode()], entry_id, fields)
        for stream, entries in reply or []
        for entry_id, fields in entries
    ]
