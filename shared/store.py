"""The status store: every task record lives in one Redis hash, every transition is one atomic script.

Each hash field holds the JSON encoding of that record field, so a read is one `HGETALL` and the API
answers with the stored fragments joined together, without decoding and re-encoding the record.
Two private fields ride along: `cancel` (a stop was asked for) and `heartbeat_at` (epoch seconds).
Every transition also emits an event (see `shared/events.py`): each script starts with the `bgt_emit`
fragment and calls it once its change is made.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any, cast

from redis.asyncio import Redis
from redis.typing import EncodableT

from shared.events import add_created, emit_lua, first_history
from shared.keys import INDEX, task_key
from shared.record import RECORD_FIELDS, TaskRecord, json_time, utc_now

_FIELDS = tuple(field.encode() for field in RECORD_FIELDS)
_LIST_BATCH = 200

# Queued -> running; refuses anything else so a task that ended (or a duplicate delivery) never starts.
_START = """
local cur = redis.call('HMGET', KEYS[1], 'state', 'attempts')
if cur[1] ~= '"queued"' then return cur[1] end
redis.call('HSET', KEYS[1], 'state', '"running"', 'started_at', ARGV[1], 'heartbeat_at', ARGV[2],
           'worker', ARGV[3], 'attempts', tostring(tonumber(cur[2]) + 1))
bgt_emit(KEYS[1], 'state', ARGV[1], false)
return 1
"""

# Progress and heartbeat of a running task. Replies 0 (go on), 1 (stop was asked) or 2 (no longer running).
# A write that changes neither progress nor message is a heartbeat only, and emits no event.
_PROGRESS = """
local cur = redis.call('HMGET', KEYS[1], 'state', 'cancel', 'progress', 'message')
if cur[1] ~= '"running"' then return 2 end
redis.call('HSET', KEYS[1], 'progress', ARGV[1], 'message', ARGV[2], 'heartbeat_at', ARGV[3])
if cur[3] ~= ARGV[1] or cur[4] ~= ARGV[2] then bgt_emit(KEYS[1], 'progress', false, false) end
if cur[2] then return 1 end
return 0
"""

# Any non-terminal state -> a terminal one; a terminal state never changes again.
_FINISH = """
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= '"queued"' and state ~= '"running"' then return 0 end
local fields = {'state', ARGV[1], 'result', ARGV[2], 'error', ARGV[3], 'finished_at', ARGV[4]}
if ARGV[5] ~= '' then
  table.insert(fields, 'progress'); table.insert(fields, ARGV[5])
end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('EXPIRE', KEYS[1], ARGV[6])
bgt_emit(KEYS[1], 'state', ARGV[4], ARGV[6])
return 1
"""

# Queued -> cancelled at once; running -> flagged for a cooperative stop; terminal -> untouched.
_CANCEL = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return false end
local outcome = 'finished'
if state == '"queued"' then
  redis.call('HSET', KEYS[1], 'state', '"cancelled"', 'finished_at', ARGV[1])
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  bgt_emit(KEYS[1], 'state', ARGV[1], ARGV[2])
  outcome = 'cancelled'
elseif state == '"running"' then
  redis.call('HSET', KEYS[1], 'cancel', '1')
  outcome = 'stopping'
end
return {outcome, redis.call('HGETALL', KEYS[1])}
"""


class CancelOutcome(Enum):
    CANCELLED = "cancelled"  # it was queued and is now cancelled
    STOPPING = "stopping"  # it is running and has been asked to stop
    FINISHED = "finished"  # it had already ended; nothing changed


class ProgressReply(Enum):
    CONTINUE = 0
    STOP_ASKED = 1
    NOT_RUNNING = 2


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


class StatusStore:
    """Task records in Redis. The API, the runner and every executor go through this class only."""

    def __init__(
        self, redis: Redis, *, ttl_seconds: int, task_events_maxlen: int = 1_000, events_maxlen: int = 10_000
    ) -> None:
        self.redis = redis
        self.ttl_seconds = ttl_seconds
        self.events_maxlen = {"task_maxlen": task_events_maxlen, "all_maxlen": events_maxlen}
        emit = emit_lua(**self.events_maxlen)
        self._start = redis.register_script(emit + _START)
        self._progress = redis.register_script(emit + _PROGRESS)
        self._finish = redis.register_script(emit + _FINISH)
        self._cancel = redis.register_script(emit + _CANCEL)

    async def create(
        self, task_id: str, name: str, params_json: str, executor: str, *, now: datetime | None = None
    ) -> bytes:
        """Write a new `queued` record and index it; returns the record as JSON."""
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
            "created_at": json_time(moment),
            "started_at": "null",
            "finished_at": "null",
            "history": first_history(json_time(moment)),
        }
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(task_key(task_id), mapping=cast(dict[EncodableT, EncodableT], fields))
            pipe.zadd(INDEX, {task_id: int(moment.timestamp() * 1_000_000)})
            add_created(pipe, task_id, fields, **self.events_maxlen)
            await pipe.execute()
        return record_json({k.encode(): v.encode() for k, v in fields.items()})

    async def get_json(self, task_id: str) -> bytes | None:
        """The record as JSON in one round trip, or None if there is no such task."""
        fields = cast(dict[bytes, bytes], await self.redis.hgetall(task_key(task_id)))
        return record_json(fields) if fields else None

    async def get(self, task_id: str) -> TaskRecord | None:
        raw = await self.get_json(task_id)
        return TaskRecord.model_validate_json(raw) if raw else None

    async def start(self, task_id: str, worker: str, *, now: datetime | None = None) -> bool:
        """Claim a queued task for `worker` to run; False if it is anything but queued."""
        moment = now or utc_now()
        args: list[EncodableT] = [json_time(moment), moment.timestamp(), dump_json(worker)]
        reply = await self._start(keys=[task_key(task_id)], args=args)
        return bool(reply == 1)

    async def progress(self, task_id: str, fraction: float, message: str | None) -> ProgressReply:
        """Record progress (also the heartbeat); the reply says whether the task should stop."""
        args: list[EncodableT] = [dump_json(round(fraction, 6)), dump_json(message), utc_now().timestamp()]
        return ProgressReply(await self._progress(keys=[task_key(task_id)], args=args))

    async def finish(
        self,
        task_id: str,
        state: str,
        *,
        result_json: str = "null",
        error: str | None = None,
        progress: float | None = None,
    ) -> bool:
        """End a task in a terminal state; False if it had already ended."""
        args: list[EncodableT] = [
            dump_json(state),
            result_json,
            dump_json(error),
            json_time(utc_now()),
            "" if progress is None else dump_json(progress),
            self.ttl_seconds,
        ]
        return bool(await self._finish(keys=[task_key(task_id)], args=args))

    async def cancel(self, task_id: str) -> tuple[CancelOutcome, bytes] | None:
        """Cancel or ask to stop; None if there is no such task."""
        reply = await self._cancel(keys=[task_key(task_id)], args=[json_time(utc_now()), self.ttl_seconds])
        if reply is None:
            return None
        outcome, flat = reply
        return CancelOutcome(outcome.decode()), record_json(_pairs_to_dict(flat))

    async def list_json(
        self, *, state: str | None = None, name: str | None = None, limit: int = 50, cursor: Cursor | None = None
    ) -> tuple[list[bytes], Cursor | None]:
        """Records newest first, filtered; the cursor is set when more may follow."""
        wanted = {b"state": state, b"name": name}
        checks = [(field, dump_json(value).encode()) for field, value in wanted.items() if value is not None]
        items: list[tuple[Cursor, bytes]] = []
        while len(items) <= limit:
            batch = await self._index_after(cursor, _LIST_BATCH)
            if not batch:
                break
            async with self.redis.pipeline(transaction=False) as pipe:
                for entry in batch:
                    pipe.hgetall(task_key(entry.task_id))
                records: list[dict[bytes, bytes]] = await pipe.execute()
            expired = [entry.task_id for entry, fields in zip(batch, records, strict=True) if not fields]
            if expired:
                await self.redis.zrem(INDEX, *expired)
            for entry, fields in zip(batch, records, strict=True):
                if fields and all(fields.get(field) == value for field, value in checks):
                    items.append((entry, record_json(fields)))
            cursor = batch[-1]
        page = items[:limit]
        next_cursor = page[-1][0] if len(items) > limit else None
        return [record for _, record in page], next_cursor

    async def _index_after(self, cursor: Cursor | None, count: int) -> list[Cursor]:
        """Index entries strictly after `cursor`, newest first (Redis orders equal scores by id, descending)."""
        top: float | str = "+inf" if cursor is None else cursor.score
        offset = 0
        while True:
            raw = cast(
                list[tuple[bytes, float]],
                await self.redis.zrevrangebyscore(INDEX, top, "-inf", start=offset, num=count, withscores=True),
            )
            entries = [Cursor(score, member.decode()) for member, score in raw]
            if cursor is not None:
                entries = [e for e in entries if e.score < cursor.score or e.task_id < cursor.task_id]
            if entries or len(raw) < count:
                return entries
            offset += count  # a whole batch tied with the cursor: look further

    async def ping(self) -> bool:
        return bool(await self.redis.ping())
