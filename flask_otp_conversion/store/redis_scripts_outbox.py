"""The Redis store's outbox scripts: claims under a lease, acks and releases, retries, dead letters and their
replay, the queues' snapshot, and retention (prune). Conventions and keys: ``redis_scripts.py``.
"""

from __future__ import annotations

from .redis_scripts_prelude import PRELUDE

#: ARGV: prefix, provider, account ('' with ARGV[8] '0': any), limit, lease_until, now, token, '1' if an account
#: was given. Expired leases go back to their ready set first (at most 1000 a call). Returns the rows' fields.
CLAIM = (
    PRELUDE
    + r"""
local provider, account, limit, lease_until, now, token = ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5], ARGV[6], ARGV[7]
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'leased', '-inf', now, 'LIMIT', 0, 1000)) do
  local f = redis.call('HMGET', P .. 'row:' .. id, 'state', 'q', 'nx')
  if f[1] == 'p' then redis.call('ZADD', P .. 'ready:' .. f[2], f[3], id) end
  redis.call('ZREM', P .. 'leased', id)
end
local queues = {}
if ARGV[8] == '1' then
  local accounts = account == '' and {''} or {account, ''}
  for _, a in ipairs(accounts) do
    local q = redis.call('HGET', P .. 'queues:' .. provider, a)
    if q then queues[#queues + 1] = q end
  end
else
  local all = redis.call('HGETALL', P .. 'queues:' .. provider)
  for i = 2, #all, 2 do queues[#queues + 1] = all[i] end
end
local candidates = {}
for _, q in ipairs(queues) do
  local got = redis.call('ZRANGEBYSCORE', P .. 'ready:' .. q, '-inf', now, 'WITHSCORES', 'LIMIT', 0, limit)
  for i = 1, #got, 2 do candidates[#candidates + 1] = {got[i], tonumber(got[i + 1]), q} end
end
table.sort(candidates, function(x, y)
  if x[2] ~= y[2] then return x[2] < y[2] end
  return x[1] < y[1]
end)
local out = {}
for i = 1, math.min(limit, #candidates) do
  local id, q = candidates[i][1], candidates[i][3]
  redis.call('ZREM', P .. 'ready:' .. q, id)
  redis.call('ZADD', P .. 'leased', lease_until, id)
  redis.call('HSET', P .. 'row:' .. id, 'tok', token, 'lu', lease_until)
  out[#out + 1] = row_fields(id)
end
return out
"""
)

#: ARGV: prefix, kind ('ack', 'release'), now, then id, token pairs. Returns the ids changed.
SETTLE_HELD = (
    PRELUDE
    + r"""
local kind, now = ARGV[2], ARGV[3]
local out = {}
for i = 4, #ARGV, 2 do
  local id = ARGV[i]
  local f = held(id, ARGV[i + 1])
  if f then
    if kind == 'ack' then
      finish(id, f[3], 'r', now)
    else
      unlease(id)
      redis.call('ZADD', P .. 'ready:' .. f[3], f[4], id)
    end
    out[#out + 1] = id
  end
end
return out
"""
)

#: ARGV: prefix, id, token, next_attempt_at, error. Returns 1 if the row changed.
RETRY = (
    PRELUDE
    + r"""
local id, nx = ARGV[2], ARGV[4]
local f = held(id, ARGV[3])
if not f then return 0 end
unlease(id)
redis.call('HINCRBY', P .. 'row:' .. id, 'n', 1)
redis.call('HSET', P .. 'row:' .. id, 'nx', nx, 'e', ARGV[5])
redis.call('ZADD', P .. 'ready:' .. f[3], nx, id)
return 1
"""
)

#: ARGV: prefix, id, token, reason, now. Returns 1 if the row changed.
DEAD_LETTER = (
    PRELUDE
    + r"""
local id = ARGV[2]
local f = held(id, ARGV[3])
if not f then return 0 end
redis.call('HINCRBY', P .. 'row:' .. id, 'n', 1)
redis.call('HSET', P .. 'row:' .. id, 'r', ARGV[4])
finish(id, f[3], 'd', ARGV[5])
return 1
"""
)

#: ARGV: prefix, created_before, now, then queue, reason pairs. Dead-letters the pending rows of those queues
#: created before ``created_before`` that are not under an unexpired lease. Returns each moved row's provider.
EXPIRE = (
    PRELUDE
    + r"""
local before, now = '(' .. ARGV[2], ARGV[3]
local out = {}
for i = 4, #ARGV, 2 do
  local q, reason = ARGV[i], ARGV[i + 1]
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'pending:' .. q, '-inf', before)) do
    local f = redis.call('HMGET', P .. 'row:' .. id, 'state', 'tok', 'lu', 'pr')
    if f[1] == 'p' and not (f[2] and tonumber(f[3]) > tonumber(now)) then
      redis.call('HINCRBY', P .. 'row:' .. id, 'n', 1)
      redis.call('HSET', P .. 'row:' .. id, 'r', reason)
      finish(id, q, 'd', now)
      out[#out + 1] = f[4]
    end
  end
end
return out
"""
)

#: ARGV: prefix, limit, then ids ('' alone: every dead letter). Returns the dead rows' fields, newest first.
DEAD_LETTERS = (
    PRELUDE
    + r"""
local limit = tonumber(ARGV[2])
local rows = {}
local function add(id)
  local f = redis.call('HMGET', P .. 'row:' .. id, 'state', 'dt', 'r')
  if f[1] == 'd' then
    local row = row_fields(id)
    row[#row + 1] = f[3] or ''
    row[#row + 1] = f[2]
    rows[#rows + 1] = row
  end
end
if ARGV[3] == '' then
  for _, id in ipairs(redis.call('ZREVRANGE', P .. 'dead', 0, limit - 1)) do add(id) end
else
  for i = 3, #ARGV do add(ARGV[i]) end
end
return rows
"""
)

#: ARGV: prefix, now, then ids ('' alone: every dead letter). Returns how many were made pending.
REPLAY = (
    PRELUDE
    + r"""
local now = ARGV[2]
local ids = {}
if ARGV[3] == '' then
  ids = redis.call('ZRANGE', P .. 'dead', 0, -1)
else
  for i = 3, #ARGV do ids[#ids + 1] = ARGV[i] end
end
local count = 0
for _, id in ipairs(ids) do
  local key = P .. 'row:' .. id
  local f = redis.call('HMGET', key, 'state', 'q')
  if f[1] == 'd' then
    redis.call('HSET', key, 'state', 'p', 'n', '0', 'nx', now, 'ct', now)
    redis.call('HDEL', key, 'r', 'dt', 'tok', 'lu')
    redis.call('ZREM', P .. 'dead', id)
    redis.call('ZADD', P .. 'ready:' .. f[2], now, id)
    redis.call('ZADD', P .. 'pending:' .. f[2], now, id)
    count = count + 1
  end
end
return count
"""
)

#: ARGV: prefix, now. Returns {pending, in_flight, dead, reported, oldest created_at or ''} and then, per
#: queue with pending rows, {JSON [provider, account], pending, oldest created_at}: one snapshot.
STATS = (
    PRELUDE
    + r"""
local pending, oldest = 0, nil
local queues = {}
local names = redis.call('HGETALL', P .. 'queue-names')
for i = 1, #names, 2 do
  local key = P .. 'pending:' .. names[i]
  local n = redis.call('ZCARD', key)
  if n > 0 then
    local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')[2]
    pending = pending + n
    if oldest == nil or tonumber(first) < tonumber(oldest) then oldest = first end
    queues[#queues + 1] = {names[i + 1], tostring(n), first}
  end
end
local in_flight = redis.call('ZCOUNT', P .. 'leased', '(' .. ARGV[2], '+inf')
return {{tostring(pending), tostring(in_flight), tostring(redis.call('ZCARD', P .. 'dead')),
  tostring(redis.call('ZCARD', P .. 'reported')), oldest or ''}, queues}
"""
)

#: ARGV: prefix, what ('sends', 'reported', 'dead', or 'spans' with index and hash key suffixes and how many
#: fields make a row), bound (exclusive), batch. Deletes up to ``batch`` entries; returns {rows removed,
#: entries looked at}.
PRUNE = (
    PRELUDE
    + r"""
local what, bound, batch = ARGV[2], '(' .. ARGV[3], tonumber(ARGV[4])
local removed = 0
if what == 'sends' then
  local seqs = redis.call('ZRANGEBYSCORE', P .. 'sends', '-inf', bound, 'LIMIT', 0, batch)
  for _, seq in ipairs(seqs) do
    local key = P .. 'send:' .. seq
    local f = redis.call('HMGET', key, 'pr', 'm', 'ph', 't')
    if f[1] then
      redis.call('ZREM', unverified_key(f[4]), f[3] .. '|' .. seq)
      redis.call('HDEL', P .. 'msgid:' .. f[1], f[2])
      redis.call('ZREM', P .. 'phone:' .. f[3], seq)
      redis.call('ZREM', P .. 'unsettled:' .. f[1], seq)
      redis.call('DEL', key)
      removed = removed + 1
    end
    redis.call('ZREM', P .. 'sends', seq)
  end
  return {removed, #seqs}
elseif what == 'unverified' then
  -- minutes wholly before the bound: their sends are pruned (an index entry, not a row: none counted)
  local starts = redis.call('ZRANGEBYSCORE', P .. 'unverified-minutes', '-inf', bound, 'LIMIT', 0, batch)
  for _, start in ipairs(starts) do
    redis.call('DEL', P .. 'unverified:' .. start)
    redis.call('ZREM', P .. 'unverified-minutes', start)
  end
  return {0, #starts}
elseif what == 'reported' or what == 'dead' then
  local ids = redis.call('ZRANGEBYSCORE', P .. what, '-inf', bound, 'LIMIT', 0, batch)
  for _, id in ipairs(ids) do
    removed = removed + redis.call('DEL', P .. 'row:' .. id)
    redis.call('ZREM', P .. what, id)
  end
  return {removed, #ids}
else
  local index, prefix, width = ARGV[5], ARGV[6], tonumber(ARGV[7])
  local starts = redis.call('ZRANGEBYSCORE', P .. index, '-inf', bound, 'LIMIT', 0, batch)
  for _, start in ipairs(starts) do
    local key = P .. prefix .. start
    removed = removed + math.floor(redis.call('HLEN', key) / width)
    redis.call('DEL', key)
    redis.call('ZREM', P .. index, start)
  end
  return {removed, #starts}
end
"""
)
