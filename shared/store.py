"""The status store: one Redis string per task record, every transition one atomic script (`shared/lua/`).

What a task costs, by design: a read is one `GET`; creating is one script (the record, its index entry, one
event, and the Celery message itself when the broker is this Redis); a short task's start and end are one
more script. A running task is leased (`leases` sorted set, deadlines on Redis's clock) and renewed by its
process; the sweeper settles the leases that ran out. Indexes per owner, task name and state bucket make
every listing a merge of a few sorted sets, and expired records leave them through the sweeper.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any, cast

from redis.exceptions import RedisClusterException, RedisError
from redis.typing import EncodableT

from shared.batch import Batcher
from shared.clock import RedisClock
from shared.keys import ACTIVE, Keyspace
from shared.record import TaskRecord, json_time
from shared.scripts import Scripts
from shared.snapshot import FRAGMENTS, SEPARATOR, Snapshot

# What "the store cannot be reached" raises: redis-py's errors, and its cluster client's (which are not RedisErrors).
STORE_ERRORS = (RedisError, RedisClusterException)
# ... and, for a health check, a socket that failed or took too long.
UNREACHABLE = (RedisError, RedisClusterException, TimeoutError, OSError, ConnectionError)

WORKER_LOST = "WorkerLost: the worker running it stopped sending heartbeats; re-queued"
PROCESS_LOST = "LostError: the process running it stopped sending heartbeats"
NEVER_STARTED = "LostError: the process that accepted it stopped before starting it"


class CancelOutcome(Enum):
    CANCELLED = "cancelled"  # it was queued (or its process was killed by a revoke) and is now cancelled
    STOPPING = "stopping"  # it is running and has been asked to stop; it will end `cancelled`
    FINISHED = "finished"  # it had already ended; nothing changed


class ProgressReply(Enum):
    CONTINUE = 0
    STOP_ASKED = 1
    NOT_RUNNING = 2


class FinishReply(Enum):
    NOT_OURS = 0  # the attempt no longer owned the task; nothing changed
    ENDED = 1
    RETRYING = 2  # queued again for a retry after its backoff


class IdempotencyConflict(Exception):
    """The Idempotency-Key was used before with a different request."""


@dataclass(frozen=True)
class Created:
    snapshot: Snapshot
    new: bool  # False: the Idempotency-Key named an earlier task, and this is its record

    @property
    def task_id(self) -> str:
        return self.snapshot.task_id


@dataclass(frozen=True)
class Requeue:
    """A Celery task to send (again): its worker died, or its first message may never have been sent."""

    task_id: str
    name: str
    params_json: str
    owner: str


@dataclass(frozen=True)
class Publish:
    """A Celery message as the broker command that sends it, when the broker is this Redis (see create)."""

    command: str
    key: str
    values: tuple[EncodableT, ...]


def dump_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class StatusStore:
    """Task records in Redis. The API, the runner, the sweeper and both executors go through this class only.

    `owner` arguments: None means "do not check" (no authentication); a string scopes the call to that owner.
    """

    def __init__(
        self,
        redis: Any,
        *,
        ttl_seconds: int,
        lease_seconds: float = 30.0,
        events_maxlen: int = 10_000,
        keys: Keyspace | None = None,
        clock: RedisClock | None = None,
        register_every: float = 60.0,
    ) -> None:
        self.redis = redis
        self.register_every = register_every  # seconds between re-registrations of a name in the listing's sets
        self.ttl_seconds = ttl_seconds
        self.lease_seconds = lease_seconds
        self.events_maxlen = events_maxlen
        self.keys = keys or Keyspace()
        self.clock = clock or RedisClock()
        self.batcher = Batcher(redis)  # commands of one turn of the event loop share one round trip
        self.scripts = Scripts.register(self.batcher)
        self._registered: dict[tuple[int, str, str], float] = {}

    # -- time ---------------------------------------------------------------------------------------------

    def now(self) -> tuple[str, int]:
        """Now on Redis's clock: as a JSON time for records, and in µs for indexes and events."""
        moment = self.clock.now()
        return _json_epoch(moment), int(moment * 1_000_000)

    def deadline(self, extra: float = 0.0) -> float:
        return self.clock.now() + self.lease_seconds + extra

    # -- creating -----------------------------------------------------------------------------------------

    def new_task_id(self, owner: str = "", idempotency_key: str | None = None) -> str:
        """A fresh id; with an Idempotency-Key, in the partition where that key lives (one script does both)."""
        partition = self.keys.partition_for_key(owner, idempotency_key) if idempotency_key else None
        return self.keys.new_task_id(partition)

    async def create(
        self,
        task_id: str,
        name: str,
        params_json: str,
        executor: str,
        *,
        owner: str = "",
        max_attempts: int = 1,
        idempotency: tuple[str, str] | None = None,
        lease: str = "",
        publish: Publish | None = None,
    ) -> Created:
        """Store a new `queued` record, or find the one an Idempotency-Key (key, fingerprint) created.

        `lease`: 'q' for a task this process will run (it ends `lost` if the process dies first), 'd' for a
        Celery message not yet confirmed sent (re-sent by a sweeper unless released), '' for none.
        `publish`: the Celery message, sent by the same script when the broker is this Redis.
        """
        await self.clock.ensure(self.redis)
        at, now_us = self.now()
        fragments = _new_record(name, params_json, executor, owner, max_attempts, lease, at, now_us)
        partition = self.keys.partition_of(task_id)
        idem_key = self.keys.idempotency(partition, owner, idempotency[0]) if idempotency else ""
        record_key = self.keys.record(task_id)
        keys = [
            record_key,
            self.keys.index(partition, owner, name, ACTIVE),
            self.keys.leases(partition),
            self.keys.events(partition),
            idem_key or record_key,
            self.keys.names(partition, owner),
            self.keys.owners(partition),
            publish.key if publish else record_key,
        ]
        parts = [fragments[name].encode() for name in FRAGMENTS]
        value = SEPARATOR.join(parts)
        args: list[EncodableT] = [
            task_id,
            idempotency[1] if idempotency else "",
            self.ttl_seconds,
            now_us,
            self.deadline() if lease else "",
            lease,
            self.events_maxlen,
            self._registration(partition, owner, name),
            name,
            owner,
            value,
            publish.command if publish else "",
            *(publish.values if publish else ()),
        ]
        reply = await self.scripts.create(keys=keys, args=args)
        outcome = reply[0].decode()
        if outcome == "conflict":
            raise IdempotencyConflict(idempotency[0] if idempotency else "")
        if outcome == "existing":
            existing = await self.read(reply[1].decode())
            if existing is None:
                raise IdempotencyConflict("the task this Idempotency-Key named is gone")
            return Created(existing, new=False)
        return Created(Snapshot(task_id, parts), new=True)

    def _registration(self, partition: int, owner: str, name: str) -> EncodableT:
        """The score to (re-)register this owner's task name with, or '' when this process did so recently."""
        key, now = (partition, owner, name), time.monotonic()
        if now - self._registered.get(key, -self.register_every) < self.register_every:
            return ""
        self._registered[key] = now
        return self.clock.now()

    async def forget_idempotency_key(self, owner: str, key: str) -> None:
        """After a failed dispatch, so that the client's retry with the same key starts a new task."""
        await self.redis.delete(self.keys.idempotency(self.keys.partition_for_key(owner, key), owner, key))

    # -- reading ------------------------------------------------------------------------------------------

    async def read(self, task_id: str) -> Snapshot | None:
        """The record as stored, in one `GET`; None if there is no such task."""
        raw = await self.batcher.call("GET", self.keys.record(task_id))
        return Snapshot.parse(task_id, raw) if raw else None

    async def read_many(self, task_ids: Sequence[str]) -> list[Snapshot | None]:
        """Records by id in one round trip (one `MGET` per partition)."""
        by_partition: dict[int, list[int]] = {}
        for i, task_id in enumerate(task_ids):
            by_partition.setdefault(self.keys.partition_of(task_id), []).append(i)
        out: list[Snapshot | None] = [None] * len(task_ids)
        if not task_ids:
            return out
        replies = await asyncio.gather(
            *(
                self.batcher.call("MGET", *(self.keys.record(task_ids[i]) for i in positions))
                for positions in by_partition.values()
            )
        )
        for positions, values in zip(by_partition.values(), replies, strict=True):
            for i, raw in zip(positions, values, strict=True):
                out[i] = Snapshot.parse(task_ids[i], raw) if raw else None
        return out

    async def get(self, task_id: str) -> TaskRecord | None:
        snapshot = await self.read(task_id)
        return TaskRecord.model_validate_json(snapshot.json) if snapshot else None

    async def get_json(self, task_id: str) -> bytes | None:
        snapshot = await self.read(task_id)
        return snapshot.json if snapshot else None

    # -- running ------------------------------------------------------------------------------------------

    async def claim(self, task_id: str, worker: str, *, started: tuple[str, int] | None = None) -> int:
        """Claim a queued task for `worker` under a lease; the attempt number, or 0 if it is anything but queued.

        `started`: when the attempt began (JSON time, µs), if before now. Claiming twice with the same worker
        and start is harmless (the second reply is the same attempt), so a lost reply can be retried.
        """
        await self.clock.ensure(self.redis)
        at, now_us = started or self.now()
        partition = self.keys.partition_of(task_id)
        keys = [self.keys.record(task_id), self.keys.leases(partition), self.keys.events(partition)]
        args: list[EncodableT] = [task_id, dump_json(worker), at, now_us, self.deadline(), self.events_maxlen]
        return int(await self.scripts.claim(keys=keys, args=args))

    def report_call(
        self, task_id: str, attempt: int, progress: tuple[float, str | None] | None
    ) -> tuple[list[str], list[EncodableT]]:
        """The keys and arguments of one heartbeat (with progress, unless None), for a pipeline of many."""
        _, now_us = self.now()
        partition = self.keys.partition_of(task_id)
        keys = [self.keys.record(task_id), self.keys.leases(partition), self.keys.events(partition)]
        fraction, message = progress if progress else (0.0, None)
        args: list[EncodableT] = [
            task_id,
            attempt,
            dump_json(round(fraction, 6)) if progress else "",
            dump_json(message) if progress else "",
            self.deadline(),
            self.events_maxlen,
            now_us,
        ]
        return keys, args

    async def report(self, task_id: str, attempt: int, fraction: float, message: str | None) -> ProgressReply:
        """Record progress and renew the lease; the reply says whether the attempt should stop."""
        keys, args = self.report_call(task_id, attempt, (fraction, message))
        return ProgressReply(int(await self.scripts.report(keys=keys, args=args)))

    async def finish(
        self,
        task_id: str,
        state: str,
        *,
        owner: str,
        name: str,
        attempt: int | None = None,
        started: tuple[str, str, int] | None = None,
        result_json: str = "null",
        error: str | None = None,
        message_json: str = "",
        retry_delay: float | None = None,
    ) -> tuple[FinishReply, str]:
        """End attempt `attempt` in `state` (or, failed with `retry_delay`, queue it again for a retry).

        `attempt` None: a task that never started, or (with `started` = worker JSON, start JSON time, start µs)
        one that ran without a start written: its start and end are written together.
        `message_json`: the task's last message as JSON ('' keeps the stored one).
        Replies how it went and the state stored (a stop asked while it ran makes any end `cancelled`).
        """
        at, now_us = self.now()
        partition = self.keys.partition_of(task_id)
        mode = "attempt" if attempt is not None else ("lazy" if started else "queued")
        keys = [
            self.keys.record(task_id),
            self.keys.leases(partition),
            self.keys.index(partition, owner, name, ACTIVE),
            self.keys.index(partition, owner, name, state),
            self.keys.index(partition, owner, name, "cancelled"),
            self.keys.events(partition),
        ]
        args: list[EncodableT] = [
            task_id,
            mode,
            "" if attempt is None else attempt,
            state,
            result_json,
            dump_json(error),
            at,
            now_us,
            "1.0" if state == "succeeded" else "",
            message_json,
            self.ttl_seconds,
            self.events_maxlen,
            "" if retry_delay is None else self.deadline(retry_delay),
            *(started if started else ("", "", "")),
        ]
        code, stored = await self.scripts.finish(keys=keys, args=args)
        return FinishReply(int(code)), stored.decode()

    async def cancel(
        self, task_id: str, owner: str | None = None, *, terminated: bool = False
    ) -> tuple[CancelOutcome, Snapshot] | None:
        """Cancel or ask to stop; None if there is no such task (for this owner).

        `terminated`: the running attempt's process was killed (a Celery revoke with terminate).
        """
        snapshot = await self.read(task_id)
        if snapshot is None or not snapshot.visible_to(owner):
            return None
        at, now_us = self.now()
        partition = self.keys.partition_of(task_id)
        keys = [
            self.keys.record(task_id),
            self.keys.leases(partition),
            self.keys.index(partition, snapshot.owner, snapshot.name, ACTIVE),
            self.keys.index(partition, snapshot.owner, snapshot.name, "cancelled"),
            self.keys.events(partition),
        ]
        args: list[EncodableT] = [task_id, at, now_us, self.ttl_seconds, self.events_maxlen, "1" if terminated else ""]
        reply = await self.scripts.cancel(keys=keys, args=args)
        if not reply:
            return None
        outcome, raw = reply
        return CancelOutcome(outcome.decode()), Snapshot.parse(task_id, raw)

    # -- leases -------------------------------------------------------------------------------------------

    async def expired_leases(self, limit: int = 100) -> list[str]:
        """Ids of tasks whose lease ran out by Redis's clock (their process is presumed dead)."""
        await self.clock.ensure(self.redis)
        now = self.clock.now()
        async with self.redis.pipeline(transaction=False) as pipe:
            for partition in self.keys.all_partitions():
                pipe.zrangebyscore(self.keys.leases(partition), "-inf", now, start=0, num=limit)
            replies = cast(list[list[bytes]], await pipe.execute())
        return [task_id.decode() for ids in replies for task_id in ids]

    async def expire_lease(self, task_id: str, *, can_requeue: bool) -> Requeue | str:
        """Act on one expired lease: a Requeue to send, or what happened ('lost', 'cancelled', 'gone', 'skip')."""
        snapshot = await self.read(task_id)
        partition = self.keys.partition_of(task_id)
        owner, name = (snapshot.owner, snapshot.name) if snapshot else ("", "")
        keys = [
            self.keys.record(task_id),
            self.keys.leases(partition),
            self.keys.index(partition, owner, name, ACTIVE),
            self.keys.index(partition, owner, name, "cancelled"),
            self.keys.index(partition, owner, name, "lost"),
            self.keys.events(partition),
        ]
        at, now_us = self.now()
        args: list[EncodableT] = [
            task_id,
            self.lease_seconds,
            "1" if can_requeue else "0",
            dump_json(WORKER_LOST),
            dump_json(PROCESS_LOST),
            dump_json(NEVER_STARTED),
            at,
            now_us,
            self.ttl_seconds,
            self.events_maxlen,
        ]
        outcome = (await self.scripts.expire(keys=keys, args=args))[0].decode()
        if outcome == "requeue" and snapshot is not None:
            return Requeue(task_id, name, snapshot.raw("params").decode(), owner)
        return str(outcome)

    async def adopt(self, task_id: str, older_than: float) -> bool:
        """A Celery task queued (its message with the broker) for `older_than` seconds, or that long since it
        was last sent again: lease it as unsent, so the sweep sends its message again (a duplicate is refused
        by the claim). What covers a message the broker lost (kombu's Redis transport can, if Redis stops
        between a worker's pop and its bookkeeping)."""
        _, now_us = self.now()
        keys = [self.keys.record(task_id), self.keys.leases(self.keys.partition_of(task_id))]
        args: list[EncodableT] = [task_id, now_us, int(older_than * 1_000_000), self.clock.now()]
        return bool(await self.scripts.adopt(keys=keys, args=args))

    async def release(self, task_id: str) -> None:
        """A queued Celery task's message is on the broker: the broker, not a lease, keeps it from now on."""
        partition = self.keys.partition_of(task_id)
        await self.scripts.release(keys=[self.keys.record(task_id), self.keys.leases(partition)], args=[task_id])

    async def ping(self) -> bool:
        return bool(await self.redis.ping())


def _json_epoch(seconds: float) -> str:
    return json_time(datetime.fromtimestamp(seconds, UTC))


def _new_record(
    name: str, params_json: str, executor: str, owner: str, max_attempts: int, lease: str, at: str, now_us: int
) -> dict[str, str]:
    return {
        "version": "1",
        "owner": owner,
        "max_attempts": str(max_attempts),
        "cancel": "",
        "lease": lease,
        "created_us": str(now_us),
        "started_us": "0",
        "resent_us": "0",
        "name": dump_json(name),
        "state": '"queued"',
        "progress": "0.0",
        "message": "null",
        "params": params_json,
        "result": "null",
        "error": "null",
        "executor": dump_json(executor),
        "worker": "null",
        "attempts": "0",
        "attempt_errors": "[]",
        "created_at": at,
        "started_at": "null",
        "finished_at": "null",
        "history": '[{"state":"queued","at":' + at + ',"attempt":0,"worker":null}]',
    }
