"""Events, the write side: every change of a record is copied to its task's stream and to the all-tasks stream.

Both executors change records only through the store's Lua scripts, so the events are emitted there: each
script is prefixed with `emit_lua()` and calls `bgt_emit(...)` after a successful transition. An event is a
copy of the whole hash (the same JSON fragments `HGETALL` returns) plus `_kind` (`state` or `progress`), so
the latest event alone is always enough to show a task, and a client that missed some loses nothing but
intermediate progress.
"""

from __future__ import annotations

from string import Template

from shared.keys import EVENTS, TASK_EVENTS_SUFFIX

KIND_FIELD = "_kind"  # the event's kind, beside the record's own fields (which never start with "_")
STATE, PROGRESS = "state", "progress"

# bgt_emit(key, kind, at, ttl): `at` (a JSON time) appends the state now stored to `history`; `ttl` (seconds)
# makes the task's stream expire with its record. Costs HGETALL, 2 XADD, plus HSET with `at`, EXPIRE with `ttl`.
_EMIT = Template("""
local function bgt_emit(key, kind, at, ttl)
  local flat = redis.call('HGETALL', key)
  if at then
    local state, attempt, worker, slot = 'null', '0', 'null', nil
    for i = 1, #flat, 2 do
      local field = flat[i]
      if field == 'state' then state = flat[i + 1]
      elseif field == 'attempts' then attempt = flat[i + 1]
      elseif field == 'worker' then worker = flat[i + 1]
      elseif field == 'history' then slot = i + 1 end
    end
    local entry = '{"state":' .. state .. ',"at":' .. at .. ',"attempt":' .. attempt .. ',"worker":' .. worker .. '}'
    local history = '[' .. entry .. ']'
    if slot and string.sub(flat[slot], -2) == '}]' then
      history = string.sub(flat[slot], 1, -2) .. ',' .. entry .. ']'
    end
    redis.call('HSET', key, 'history', history)
    if slot then flat[slot] = history else flat[#flat + 1] = 'history'; flat[#flat + 1] = history end
  end
  local stream = key .. '$suffix'
  redis.call('XADD', stream, 'MAXLEN', '~', $task_maxlen, '*', '$kind', kind, unpack(flat))
  redis.call('XADD', '$all', 'MAXLEN', '~', $all_maxlen, '*', '$kind', kind, unpack(flat))
  if ttl then redis.call('EXPIRE', stream, ttl) end
end
""")


def emit_lua(*, task_maxlen: int, all_maxlen: int) -> str:
    """The Lua fragment that defines `bgt_emit`, to put in front of every transition script."""
    return _EMIT.substitute(
        suffix=TASK_EVENTS_SUFFIX, all=EVENTS, kind=KIND_FIELD, task_maxlen=int(task_maxlen), all_maxlen=int(all_maxlen)
    )


def first_history(at_json: str) -> str:
    """The `history` of a new record; the same entry shape `bgt_emit` appends."""
    return '[{"state":"queued","at":' + at_json + ',"attempt":0,"worker":null}]'
