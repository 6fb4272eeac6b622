"""Every Redis key the status store uses, named in one place, and which partition a task lives in.

A task's record and everything a transition touches with it (the partition's leases, indexes and event
stream) share one hash tag, `{N}` for partition N, so each transition is one script on one Redis Cluster
slot. Structures that span tasks are split into `partitions` of them; readers (hub, sweeper, listing,
metrics) read every partition. On a single Redis, one partition is enough and cheapest.
"""

from __future__ import annotations

import os
import random
import zlib
from dataclasses import dataclass

PREFIX = "bgt"
TERMINAL_BUCKETS = ("succeeded", "failed", "cancelled", "lost")
ACTIVE = "active"  # the index bucket of queued and running tasks
PROCESSES = f"{PREFIX}:processes"  # hash: process name -> what it reported last (workers panel)
_NO_OWNER = "-"
_LOW_BITS = 1 << 32


def _uuid4() -> str:
    """`str(uuid.uuid4())` at a third of its cost (it is made on every POST): 122 random bits, version 4,
    RFC 4122 variant."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


@dataclass(frozen=True)
class Keyspace:
    partitions: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.partitions <= 1024:
            raise ValueError("partitions must be between 1 and 1024")

    def partition_of(self, task_id: str) -> int:
        """The partition a task id belongs to: its last 32 bits (ids are UUIDs), so no lookup is needed."""
        if self.partitions == 1:
            return 0
        try:
            return int(task_id[-8:], 16) % self.partitions
        except ValueError:
            return zlib.crc32(task_id.encode()) % self.partitions

    def new_task_id(self, partition: int | None = None) -> str:
        """A random UUID4 in `partition` (or a random one): its last 32 bits are chosen to land there."""
        text = _uuid4()
        if self.partitions == 1:
            return text
        target = random.randrange(self.partitions) if partition is None else partition
        low = random.randrange(_LOW_BITS // self.partitions) * self.partitions + target
        return f"{text[:-8]}{low:08x}"

    def partition_for_key(self, owner: str, idempotency_key: str) -> int:
        """Where an Idempotency-Key lives: the task it creates is put in the same partition."""
        return zlib.crc32(f"{owner}\n{idempotency_key}".encode()) % self.partitions

    @staticmethod
    def tag(partition: int) -> str:
        return f"{PREFIX}:{{{partition}}}"

    def record(self, task_id: str) -> str:
        """The string holding one task run's record (see `shared/snapshot.py` for its layout)."""
        return f"{self.tag(self.partition_of(task_id))}:t:{task_id}"

    def leases(self, partition: int) -> str:
        """Sorted set: task id -> deadline (Redis time, s) by which its owner must act, else the sweeper does."""
        return f"{self.tag(partition)}:leases"

    def events(self, partition: int) -> str:
        """Stream: one small entry per change of any task of the partition (what changed, never the record)."""
        return f"{self.tag(partition)}:events"

    def index(self, partition: int, owner: str, name: str, bucket: str) -> str:
        """Sorted set: the owner's tasks of one name in one bucket (`active` or a terminal state), by creation µs."""
        return f"{self.tag(partition)}:ix:{owner or _NO_OWNER}:{name}:{bucket}"

    def names(self, partition: int, owner: str) -> str:
        """Sorted set: task names the owner has indexes for in the partition, scored by when last registered."""
        return f"{self.tag(partition)}:names:{owner or _NO_OWNER}"

    def owners(self, partition: int) -> str:
        """Sorted set: owners with indexes in the partition (the sweeper prunes from here), by last registration."""
        return f"{self.tag(partition)}:owners"

    def idempotency(self, partition: int, owner: str, key: str) -> str:
        """The task id and request fingerprint an Idempotency-Key maps to."""
        return f"{self.tag(partition)}:idem:{owner or _NO_OWNER}:{key}"

    def prune_lock(self, partition: int) -> str:
        """Held for a prune interval by the one process that prunes the partition's indexes."""
        return f"{self.tag(partition)}:prune"

    def all_partitions(self) -> range:
        return range(self.partitions)
