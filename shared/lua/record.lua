-- Shared by every script (included by name): a stored record is its fragments joined by 0x1f, in the
-- order `F` names (generated from shared/snapshot.py); each public fragment is that field's JSON.
local SEP = '\31'

local function split(raw)
  local out, pos = {}, 1
  while true do
    local at = string.find(raw, SEP, pos, true)
    if not at then
      out[#out + 1] = string.sub(raw, pos)
      return out
    end
    out[#out + 1] = string.sub(raw, pos, at - 1)
    pos = at + 1
  end
end

local function join(f)
  return table.concat(f, SEP)
end

local function unquote(json_string)
  return string.sub(json_string, 2, -2)
end

-- Every change a client can see bumps the version: it is the ETag and the per-task event id.
local function bump(f)
  f[F.version] = tostring(tonumber(f[F.version]) + 1)
end

local function append(list, item)
  if list == '[]' or list == 'null' then return '[' .. item .. ']' end
  return string.sub(list, 1, -2) .. ',' .. item .. ']'
end

-- `history`: the state entered, when (a JSON time), on which attempt and worker.
local function enter(f, state, at)
  f[F.state] = '"' .. state .. '"'
  f[F.history] = append(f[F.history], '{"state":"' .. state .. '","at":' .. at .. ',"attempt":' .. f[F.attempts]
    .. ',"worker":' .. f[F.worker] .. '}')
end

-- `attempt_errors`: why the current attempt ended without a result.
local function attempt_failed(f, err, at)
  f[F.attempt_errors] = append(f[F.attempt_errors], '{"attempt":' .. f[F.attempts] .. ',"error":' .. err
    .. ',"at":' .. at .. '}')
end

-- One small entry per change in the partition's stream: what changed, never a copy of the record. `k` is the
-- kind: s (state), p (progress), or r (a state entered by a task whose start is written with this change).
local function emit(stream, maxlen, id, f, kind, now_us)
  redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'i', id, 'v', f[F.version], 'k', kind,
    's', unquote(f[F.state]), 'e', unquote(f[F.executor]), 'o', f[F.owner], 'n', unquote(f[F.name]),
    'c', f[F.created_us], 'b', f[F.started_us], 't', now_us)
end

local TERMINAL = {['"succeeded"'] = true, ['"failed"'] = true, ['"cancelled"'] = true, ['"lost"'] = true}
