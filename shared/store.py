"""The status store: every task record lives in one Redis hash, every transition is one atomic script.

Each hash field holds the JSON encoding of that record field, so a read is one `HGETALL` and the API
answers with the stored fragments joined together, without decoding and re-encoding the record.
Private fields ride along: `cancel` (a stop was asked for), `owner` (who may see it) and `max_attempts`.
Transitions that run under a lease also keep the task's deadline in the `LEASES` sorted set, which is
what the sweeper reads to find tasks whose process died. Every change also emits an event (see
`shared/events.py`): each script starts with the `bgt_emit` fragment and calls it once its change is made.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from functools import cached_property
from typing import Any, cast

from redis.asyncio import Redis
from redis.typing import EncodableT

from shared.events import emit_lua, first_history
from shared.keys import LEASES, idempotency_key, index_key, task_key
from shared.record import RECORD_FIELDS, TERMINAL_STATES, TaskRecord, json_time, utc_now

_FIELDS = tuple(field.encode() for field in RECORD_FIELDS)
_LIST_BATCH = 200

# Appends `{"attempt": n, "error": ..., "at": ...}` to a stored JSON array without decoding it.
_WITH_ERROR = """
local function with_error(list, attempt, err, at)
  local item = '{"attempt":' .. attempt .. ',"error":' .. err .. ',"at":' .. at .. '}'
  if not list or list == '[]' then return '[' .. item .. ']' end
  return string.sub(list, 1, -2) .. ',' .. item .. ']'
end
"""

# A new queued record, unless its Idempotency-Key (KEYS[4], '' for none) already names a task.
_CREATE = """
if KEYS[4] ~= '' then
  local known = redis.call('HMGET', KEYS[4], 'id', 'fingerprint')
  if known[1] then
    local fields = redis.call('HGETALL', ARGV[6] .. known[1])
    if #fields > 0 then
      if known[2] ~= ARGV[2] then return {'conflict'} end
      return {'existing', fields}
    end
  end
  redis.call('HSET', KEYS[4], 'id', ARGV[1], 'fingerprint', ARGV[2])
  redis.call('EXPIRE', KEYS[4], ARGV[3])
end
redis.call('HSET', KEYS[1], unpack(ARGV, 7))
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
if ARGV[5] ~= '' then redis.call('ZADD', KEYS[3], ARGV[5], ARGV[1]) end
bgt_emit(KEYS[1], 'state', false, false)
return {'created'}
"""

# Queued -> running under a lease; replies the attempt number, or 0 if the task is not queued (a task
# that ended, or a duplicate delivery of a running one, never starts again).
_START = """
local cur = redis.call('HMGET', KEYS[1], 'state', 'attempts')
if cur[1] ~= '"queued"' then return 0 end
local attempt = tonumber(cur[2]) + 1
redis.call('HSET', KEYS[1], 'state', '"running"', 'started_at', ARGV[2], 'worker', ARGV[3], 'attempts', attempt)
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
bgt_emit(KEYS[1], 'state', ARGV[2], false)
return attempt
"""

# Progress and heartbeat of one attempt. Replies 0 (go on), 1 (stop was asked) or 2 (this attempt no
# longer owns the task: it ended, or was re-queued after its heartbeat lapsed). A write that changes
# neither progress nor message is a heartbeat only, and emits no event.
_PROGRESS = """
local cur = redis.call('HMGET', KEYS[1], 'state', 'attempts', 'cancel', 'progress', 'message')
if cur[1] ~= '"running"' or cur[2] ~= ARGV[2] then return 2 end
redis.call('HSET', KEYS[1], 'progress', ARGV[3], 'message', ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[1])
if cur[4] ~= ARGV[3] or cur[5] ~= ARGV[4] then bgt_emit(KEYS[1], 'progress', false, false) end
if cur[3] then return 1 end
return 0
"""

# The attempt ARGV[2] (or, if '', a task still queued) -> a terminal state; nothing else may end it.
_FINISH = (
    _WITH_ERROR
    + """
local cur = redis.call('HMGET', KEYS[1], 'state', 'attempts', 'attempt_errors')
if ARGV[2] == '' then
  if cur[1] ~= '"queued"' then return 0 end
elseif cur[1] ~= '"running"' or cur[2] ~= ARGV[2] then
  return 0
end
local fields = {'state', ARGV[3], 'result', ARGV[4], 'error', ARGV[5], 'finished_at', ARGV[6]}
if ARGV[7] ~= '' then table.insert(fields, 'progress'); table.insert(fields, ARGV[7]) end
if ARGV[10] ~= '' then table.insert(fields, 'message'); table.insert(fields, ARGV[10]) end
if ARGV[9] == '1' then
  table.insert(fields, 'attempt_errors'); table.insert(fields, with_error(cur[3], cur[2], ARGV[5], ARGV[6]))
end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('EXPIRE', KEYS[1], ARGV[8])
redis.call('ZREM', KEYS[2], ARGV[1])
bgt_emit(KEYS[1], 'state', ARGV[6], ARGV[8])
return 1
"""
)

# A failed attempt with attempts left -> queued again, its error kept, under a lease until it restarts.
_RETRY = (
    _WITH_ERROR
    + """
local cur = redis.call('HMGET', KEYS[1], 'state', 'attempts', 'attempt_errors')
if cur[1] ~= '"running"' or cur[2] ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'state', '"queued"', 'error', ARGV[3],
           'attempt_errors', with_error(cur[3], cur[2], ARGV[3], ARGV[4]))
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[1])
bgt_emit(KEYS[1], 'state', ARGV[4], false)
return 1
"""
)

# Queued -> cancelled at once; running -> flagged for a cooperative stop; terminal -> untouched.
_CANCEL = """
local cur = redis.call('HMGET', KEYS[1], 'state', 'owner')
if not cur[1] or (ARGV[4] ~= '' and cur[2] ~= ARGV[4]) then return false end
local outcome = 'finished'
if cur[1] == '"queued"' then
  redis.call('HSET', KEYS[1], 'state', '"cancelled"', 'finished_at', ARGV[2])
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  redis.call('ZREM', KEYS[2], ARGV[1])
  bgt_emit(KEYS[1], 'state', ARGV[2], ARGV[3])
  outcome = 'cancelled'
elseif cur[1] == '"running"' then
  redis.call('HSET', KEYS[1], 'cancel', '1')
  outcome = 'stopping'
end
return {outcome, redis.call('HGETALL', KEYS[1])}
"""

# A lease that ran out: re-queue a Celery task with attempts left (if the caller can send it, ARGV[9]),
# end anything else `lost`.
# Safe to run from many processes at once: the first one to act moves the deadline or removes it.
_EXPIRE_LEASE = (
    _WITH_ERROR
    + """
local deadline = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not deadline or tonumber(deadline) > tonumber(ARGV[2]) then return {'skip'} end
local cur = redis.call('HMGET', KEYS[1], 'state', 'executor', 'attempts', 'max_attempts', 'attempt_errors',
                       'name', 'params')
if cur[1] ~= '"queued"' and cur[1] ~= '"running"' then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return {'gone'}
end
local running = cur[1] == '"running"'
if cur[2] == '"celery"' and tonumber(cur[3]) < tonumber(cur[4] or '1') then
  if ARGV[9] ~= '1' then return {'skip'} end
  local errors = cur[5]
  if running then errors = with_error(errors, cur[3], ARGV[4], ARGV[7]) end
  redis.call('HSET', KEYS[1], 'state', '"queued"', 'attempt_errors', errors, 'error', ARGV[4])
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
  if running then bgt_emit(KEYS[1], 'state', ARGV[7], false) end
  return {'requeue', cur[6], cur[7]}
end
local err, errors = ARGV[6], cur[5]
if running then err = ARGV[5]; errors = with_error(errors, cur[3], err, ARGV[7]) end
redis.call('HSET', KEYS[1], 'state', '"lost"', 'error', err, 'attempt_errors', errors, 'finished_at', ARGV[7])
redis.call('EXPIRE', KEYS[1], ARGV[8])
redis.call('ZREM', KEYS[2], ARGV[1])
bgt_emit(KEYS[1], 'state', ARGV[7], ARGV[8])
return {'lost'}
"""
)

# A re-queued Celery message is on the broker again: the broker, not a lease, now keeps the task.
_RELEASE = """
if redis.call('HGET', KEYS[1], 'state') == '"queued"' then redis.call('ZREM', KEYS[2], ARGV[1]) end
return 1
"""

WORKER_LOST = "WorkerLost: the worker running it stopped sending heartbeats; re-queued"
PROCESS_LOST = "LostError: the process running it stopped sending heartbeats"
NEVER_STARTED = "LostError: the process that accepted it stopped before starting it"


class CancelOutcome(Enum):
    CANCELLED = "cancelled"  # it was queued and is now cancelled
    STOPPING = "stopping"  # it is running and has been asked to stop
    FINISHED = "finished"  # it had already ended; nothing changed


class ProgressReply(Enum):
    CONTINUE = 0
    STOP_ASKED = 1
    NOT_RUNNING = 2


class IdempotencyConflict(Exception):
    """The Idempotency-Key was used before with a different request."""


@dataclass(frozen=True)
class Created:
    task_id: str
    record: bytes
    new: bool  # False: the Idempotency-Key named an earlier task, and this is its record


@dataclass(frozen=True)
class Requeue:
    """A Celery task whose worker died, back in `queued`: it needs a new message."""

    task_id: str
    name: str
    params_json: str


@dataclass(frozen=True)
class Cursor:
    """Where a listing page ended: the last item's index score and id."""

    score: float
    task_id: str

    def encode(self) -> str:
        return base64.urlsafe_b64encode(f"{self.score!r}:{self.task_id}".encode()).decode()

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            score, task_id = base64.urlsafe_b64decode(text.encode()).decode().split(":", 1)
            return cls(float(score), task_id)
        except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
            raise ValueError("invalid cursor") from exc


def dump_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def record_json(fields: dict[bytes, bytes]) -> bytes:
    """Join a stored hash into the record's JSON document (fields are stored JSON-encoded)."""
    return b"{" + b",".join(b'"%s":%s' % (f, fields.get(f, b"null")) for f in _FIELDS) + b"}"


def _pairs_to_dict(flat: list[bytes]) -> dict[bytes, bytes]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


@dataclass(frozen=True)
class Snapshot:
    """One record exactly as stored: the hash's fields, each a JSON fragment (private ones included)."""

    fields: Mapping[bytes, bytes]

    @cached_property
    def json(self) -> bytes:
        return record_json(dict(self.fields))

    @cached_property
    def etag(self) -> str:
        """A strong ETag of the record's JSON: it changes exactly when what a client sees changes."""
        return '"' + hashlib.blake2b(self.json, digest_size=12).hexdigest() + '"'

    def text(self, field: str) -> str | None:
        raw = self.fields.get(field.encode())
        value = json.loads(raw) if raw else None
        return value if isinstance(value, str) else None

    def time(self, field: str) -> datetime | None:
        value = self.text(field)
        return datetime.fromisoformat(value) if value else None

    @cached_property
    def task_id(self) -> str:
        return self.text("id") or ""

    @cached_property
    def state(self) -> str:
        return self.text("state") or ""

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    def visible_to(self, owner: str | None) -> bool:
        """Whether this caller may see it: None is "no authentication", otherwise the owner must match."""
        return owner is None or self.fields.get(b"owner", b"") == owner.encode()


class StatusStore:
    """Task records in Redis. The API, the runner, the sweeper and both executors go through this class only.

    `owner` arguments: None means "do not check" (no authentication); a string scopes the call to that owner.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        ttl_seconds: int,
        lease_seconds: float = 30.0,
        task_events_maxlen: int = 1_000,
        events_maxlen: int = 10_000,
    ) -> None:
        self.redis = redis
        self.ttl_seconds = ttl_seconds
        self.lease_seconds = lease_seconds
        emit = emit_lua(task_maxlen=task_events_maxlen, all_maxlen=events_maxlen)
        self._create = redis.register_script(emit + _CREATE)
        self._start = redis.register_script(emit + _START)
        self._progress = redis.register_script(emit + _PROGRESS)
        self._finish = redis.register_script(emit + _FINISH)
        self._retry = redis.register_script(emit + _RETRY)
        self._cancel = redis.register_script(emit + _CANCEL)
        self._expire_lease = redis.register_script(emit + _EXPIRE_LEASE)
        self._release = redis.register_script(_RELEASE)

    def _deadline(self, extra: float = 0.0) -> float:
        return utc_now().timestamp() + self.lease_seconds + extra

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
        now: datetime | None = None,
    ) -> Created:
        """Store a new `queued` record, or find the one an Idempotency-Key (key, fingerprint) created.

        An in-process task is leased from the start: if its process dies before running it, it ends `lost`.
        A Celery task is not: the broker keeps it for as long as it waits.
        """
        moment = now or utc_now()
        fields: dict[str, str] = {
            "id": dump_json(task_id),
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
            "created_at": json_time(moment),
            "started_at": "null",
            "finished_at": "null",
            "history": first_history(json_time(moment)),
            "owner": owner,
            "max_attempts": str(max_attempts),
        }
        idem_key, fingerprint = (idempotency_key(owner, idempotency[0]), idempotency[1]) if idempotency else ("", "")
        lease = str(self._deadline()) if executor == "background" else ""
        head: list[EncodableT] = [
            task_id,
            fingerprint,
            self.ttl_seconds,
            int(moment.timestamp() * 1_000_000),
            lease,
            task_key(""),
        ]
        flat: list[EncodableT] = [part for pair in fields.items() for part in pair]
        keys = [task_key(task_id), index_key(owner), LEASES, idem_key]
        reply = await self._create(keys=keys, args=head + flat)
        outcome = reply[0].decode()
        if outcome == "conflict":
            raise IdempotencyConflict(idempotency[0] if idempotency else "")
        if outcome == "existing":
            existing = _pairs_to_dict(reply[1])
            return Created(json.loads(existing[b"id"]), record_json(existing), new=False)
        return Created(task_id, record_json({k.encode(): v.encode() for k, v in fields.items()}), new=True)

    async def forget_idempotency_key(self, owner: str, key: str) -> None:
        """After a failed dispatch, so that the client's retry with the same key starts a new task."""
        await self.redis.delete(idempotency_key(owner, key))

    async def read(self, task_id: str) -> Snapshot | None:
        """The record as stored, in one `HGETALL`; None if there is no such task."""
        fields = cast(dict[bytes, bytes], await self.redis.hgetall(task_key(task_id)))
        return Snapshot(fields) if fields else None

    async def get_json(self, task_id: str) -> bytes | None:
        snapshot = await self.read(task_id)
        return snapshot.json if snapshot else None

    async def get(self, task_id: str) -> TaskRecord | None:
        raw = await self.get_json(task_id)
        return TaskRecord.model_validate_json(raw) if raw else None

    async def start(self, task_id: str, worker: str, *, now: datetime | None = None) -> int:
        """Claim a queued task for `worker`; the attempt number, or 0 if it is anything but queued."""
        moment = now or utc_now()
        args: list[EncodableT] = [task_id, json_time(moment), dump_json(worker), self._deadline()]
        return int(await self._start(keys=[task_key(task_id), LEASES], args=args))

    async def progress(self, task_id: str, attempt: int, fraction: float, message: str | None) -> ProgressReply:
        """Record progress and renew the lease; the reply says whether the attempt should stop."""
        args: list[EncodableT] = [task_id, attempt, dump_json(round(fraction, 6)), dump_json(message)]
        reply = await self._progress(keys=[task_key(task_id), LEASES], args=[*args, self._deadline()])
        return ProgressReply(reply)

    async def finish(
        self,
        task_id: str,
        state: str,
        *,
        attempt: int | None,
        result_json: str = "null",
        error: str | None = None,
        progress: float | None = None,
        message_json: str = "",
    ) -> bool:
        """End attempt `attempt` (None: a task that never started) in a terminal state; False if not ours.

        `message_json` is the task's last message as JSON ('' keeps the stored one).
        """
        args: list[EncodableT] = [
            task_id,
            "" if attempt is None else attempt,
            dump_json(state),
            result_json,
            dump_json(error),
            json_time(utc_now()),
            "" if progress is None else dump_json(progress),
            self.ttl_seconds,
            "1" if error is not None and attempt is not None else "0",
            message_json,
        ]
        return bool(await self._finish(keys=[task_key(task_id), LEASES], args=args))

    async def retry(self, task_id: str, attempt: int, error: str, *, delay: float) -> bool:
        """Put a failed attempt back in `queued`, leased for `delay` plus a lease; False if not ours."""
        args: list[EncodableT] = [task_id, attempt, dump_json(error), json_time(utc_now()), self._deadline(delay)]
        return bool(await self._retry(keys=[task_key(task_id), LEASES], args=args))

    async def cancel(self, task_id: str, owner: str | None = None) -> tuple[CancelOutcome, bytes] | None:
        """Cancel or ask to stop; None if there is no such task (for this owner)."""
        args: list[EncodableT] = [task_id, json_time(utc_now()), self.ttl_seconds, owner or ""]
        reply = await self._cancel(keys=[task_key(task_id), LEASES], args=args)
        if reply is None:
            return None
        outcome, flat = reply
        return CancelOutcome(outcome.decode()), record_json(_pairs_to_dict(flat))

    async def expired_leases(self, limit: int = 100) -> list[str]:
        """Ids of tasks whose lease ran out (their process is presumed dead)."""
        now = utc_now().timestamp()
        ids = cast(list[bytes], await self.redis.zrangebyscore(LEASES, "-inf", now, start=0, num=limit))
        return [task_id.decode() for task_id in ids]

    async def expire_lease(self, task_id: str, *, can_requeue: bool) -> Requeue | str:
        """Act on one expired lease: a Requeue to dispatch, or what happened ('lost', 'gone', 'skip')."""
        now = utc_now()
        args: list[EncodableT] = [
            task_id,
            now.timestamp(),
            self._deadline(),
            dump_json(WORKER_LOST),
            dump_json(PROCESS_LOST),
            dump_json(NEVER_STARTED),
            json_time(now),
            self.ttl_seconds,
            "1" if can_requeue else "0",
        ]
        reply = await self._expire_lease(keys=[task_key(task_id), LEASES], args=args)
        if reply[0] == b"requeue":
            return Requeue(task_id, json.loads(reply[1]), reply[2].decode())
        return str(reply[0].decode())

    async def release_lease(self, task_id: str) -> None:
        """A re-queued Celery task's message is on the broker again."""
        await self._release(keys=[task_key(task_id), LEASES], args=[task_id])

    async def list_json(
        self,
        *,
        owner: str = "",
        state: str | None = None,
        name: str | None = None,
        limit: int = 50,
        cursor: Cursor | None = None,
    ) -> tuple[list[bytes], Cursor | None]:
        """The owner's records newest first, filtered; the cursor is set when more may follow."""
        wanted = {b"state": state, b"name": name}
        checks = [(field, dump_json(value).encode()) for field, value in wanted.items() if value is not None]
        index = index_key(owner)
        items: list[tuple[Cursor, bytes]] = []
        while len(items) <= limit:
            batch = await self._index_after(index, cursor, _LIST_BATCH)
            if not batch:
                break
            async with self.redis.pipeline(transaction=False) as pipe:
                for entry in batch:
                    pipe.hgetall(task_key(entry.task_id))
                records: list[dict[bytes, bytes]] = await pipe.execute()
            expired = [entry.task_id for entry, fields in zip(batch, records, strict=True) if not fields]
            if expired:
                await self.redis.zrem(index, *expired)
            for entry, fields in zip(batch, records, strict=True):
                if fields and all(fields.get(field) == value for field, value in checks):
                    items.append((entry, record_json(fields)))
            cursor = batch[-1]
        page = items[:limit]
        next_cursor = page[-1][0] if len(items) > limit else None
        return [record for _, record in page], next_cursor

    async def _index_after(self, index: str, cursor: Cursor | None, count: int) -> list[Cursor]:
        """Index entries strictly after `cursor`, newest first (Redis orders equal scores by id, descending)."""
        top: float | str = "+inf" if cursor is None else cursor.score
        offset = 0
        while True:
            raw = cast(
                list[tuple[bytes, float]],
                await self.redis.zrevrangebyscore(index, top, "-inf", start=offset, num=count, withscores=True),
            )
            entries = [Cursor(score, member.decode()) for member, score in raw]
            if cursor is not None:
                entries = [e for e in entries if e.score < cursor.score or e.task_id < cursor.task_id]
            if entries or len(raw) < count:
                return entries
            offset += count  # a whole batch tied with the cursor: look further

    async def ping(self) -> bool:
        return bool(await self.redis.ping())
