"""The Redis store's server-side Lua scripts: every step that must be atomic runs as one script.

Conventions, so that no value is ever rounded on the way: ``ARGV[1]`` is the key prefix; every time travels and
is stored as the decimal string Python's ``repr`` wrote (Redis parses scores from it exactly, and Lua only ever
compares ``tonumber`` of it); a time Lua computes (``take_slots``) is written back with ``%.17g``, which round-trips
a double. Lua numbers are never returned for times: a Redis integer reply would truncate them.

Keys (``P`` is the prefix; ``{seq}`` a number from a counter, so no user text is ever parsed out of a key):

``P send:{seq}`` hash
    a send: ``pr`` provider, ``m`` message id, ``ph`` phone, ``t`` sent_at, ``a`` account, ``v`` verified_at,
    ``s`` "1" once settled. Found by ``P msgid:{provider}`` (hash, message id -> seq), ``P phone:{phone}`` (zset by
    sent_at), and ``P unsettled:{provider}`` (zset by sent_at: neither verified nor settled). ``P sends`` (zset
    by sent_at) is for prune.
``P unverified:{minute}`` zset, all scores 0
    the unverified sends (``send_allowed``'s limits) of the minute starting at ``{minute}``, as members
    ``{phone}|{seq}``: lexicographic ranges of it are number prefixes, so ``unverified_sends`` is a ``ZLEXCOUNT``
    per minute of its range. A send leaves it when it, or a later send to its number, is verified, and when
    pruned; ``P unverified-minutes`` (zset by start) indexes the minutes.
``P row:{id}`` hash
    an outbox row (``id`` zero-padded to 16 digits, so members order by id): fields in ``_ROW``; ``state`` p, r or
    d; ``q`` its queue.
``P queues:{provider}`` hash, account -> queue number; ``P queue-names`` hash, queue -> JSON [provider, account]
    each (provider, account) is a queue with ``P ready:{q}`` (zset by next_attempt_at: pending, not leased) and
    ``P pending:{q}`` (zset by created_at: every pending row, leased or not).
``P leased`` zset by lease_until
    rows under a lease; the next claim moves an expired one back to its ready set (its token stays on the row,
    so a late ack still counts). ``P reported`` and ``P dead`` are zsets by done_at.
``P count:{span}:{start}`` hash, ``{r|v|u}|{calling code}|{provider}`` -> count, indexed by ``P count-starts:{span}``;
``P fig:{hour}`` hash, ``{name}|{provider}`` -> count, indexed by ``P fig-hours``; ``P spools``, ``P flags``,
``P lease-owner``, ``P lease-until``, ``P schedules`` hashes; ``P format`` the data format version.
"""

from __future__ import annotations

#: Functions every script may use.
_PRELUDE = r"""
local P = ARGV[1]

local function send_row(seq)
  local f = redis.call('HMGET', P .. 'send:' .. seq, 'pr', 'm', 'ph', 't', 'v', 'a', 's')
  if not f[1] then return nil end
  return {tostring(seq), f[1], f[2], f[3], f[4], f[5] or '', f[6] or '', f[7] or ''}
end

local function add_rows(out, seqs)
  for _, seq in ipairs(seqs) do
    if seq then
      local row = send_row(seq)
      if row then out[#out + 1] = row end
    end
  end
end

-- One read of the records transaction. The commit runs the same query again and compares digests, so a
-- query's answer must be a pure function of the data: arrays only, built in a fixed order.
local function run_query(q)
  local kind = q[1]
  local out = {}
  if kind == 'spool' then
    out[1] = redis.call('HGET', P .. 'spools', q[2]) or '0'
  elseif kind == 'ids' then
    if #q[3] > 0 then
      add_rows(out, redis.call('HMGET', P .. 'msgid:' .. q[2], unpack(q[3])))
    end
  elseif kind == 'phones' then
    for _, r in ipairs(q[2]) do
      add_rows(out, redis.call('ZRANGEBYSCORE', P .. 'phone:' .. r[1], r[2], r[3]))
    end
  elseif kind == 'unsettled' then
    local provider, account, after, before, limit = q[2], q[3], q[4], '(' .. q[5], tonumber(q[6])
    local offset = 0
    while #out < limit do
      local seqs = redis.call('ZRANGEBYSCORE', P .. 'unsettled:' .. provider, after, before, 'LIMIT', offset, 256)
      if #seqs == 0 then break end
      offset = offset + #seqs
      for _, seq in ipairs(seqs) do
        local row = send_row(seq)
        if row and row[6] == '' and row[8] == '' and (account == cjson.null or row[7] == account) and #out < limit then
          out[#out + 1] = row
        end
      end
    end
  else
    error('unknown query ' .. tostring(kind))
  end
  return out
end

-- The unverified-sends index: the minute key of a send at ``t`` and its member there.
local function unverified_key(t)
  return P .. 'unverified:' .. string.format('%d', math.floor(tonumber(t) / 60) * 60)
end

-- A send verified: it and every earlier send to its number leave the unverified index (their codes are
-- superseded by the one the user typed).
local function clear_unverified(phone, t)
  for _, seq in ipairs(redis.call('ZRANGEBYSCORE', P .. 'phone:' .. phone, '-inf', t)) do
    local at = redis.call('HGET', P .. 'send:' .. seq, 't')
    if at then redis.call('ZREM', unverified_key(at), phone .. '|' .. seq) end
  end
end

local function queue(provider, account)
  local key = P .. 'queues:' .. provider
  local q = redis.call('HGET', key, account)
  if not q then
    q = tostring(redis.call('INCR', P .. 'queue-seq'))
    redis.call('HSET', key, account, q)
    redis.call('HSET', P .. 'queue-names', q, cjson.encode({provider, account}))
  end
  return q
end

local ROW = {'m', 'ph', 'pr', 'st', 'vt', 'ct', 'n', 'e', 'a', 'c'}

local function row_fields(id)
  local f = redis.call('HMGET', P .. 'row:' .. id, unpack(ROW))
  local out = {id}
  for i = 1, #ROW do out[i + 1] = f[i] or '' end
  return out
end

-- The row if it is pending and still carries ``token``: state, q, nx.
local function held(id, token)
  local f = redis.call('HMGET', P .. 'row:' .. id, 'state', 'tok', 'q', 'nx')
  if f[1] == 'p' and f[2] == token then return f end
  return nil
end

local function unlease(id)
  redis.call('HDEL', P .. 'row:' .. id, 'tok', 'lu')
  redis.call('ZREM', P .. 'leased', id)
end

local function finish(id, q, state, now)
  redis.call('HSET', P .. 'row:' .. id, 'state', state, 'dt', now)
  unlease(id)
  redis.call('ZREM', P .. 'ready:' .. q, id)
  redis.call('ZREM', P .. 'pending:' .. q, id)
  redis.call('ZADD', P .. (state == 'r' and 'reported' or 'dead'), now, id)
end
"""

#: ARGV: prefix, JSON list of queries. Returns (sha1, answer) per query, the answer as JSON.
READ = (
    _PRELUDE
    + r"""
local out = {}
for _, q in ipairs(cjson.decode(ARGV[2])) do
  local payload = cjson.encode(run_query(q))
  out[#out + 1] = redis.sha1hex(payload)
  out[#out + 1] = payload
end
return out
"""
)

#: ARGV: prefix, JSON list of [query, sha1] the transaction read, JSON list of writes. Returns 0 (a read changed
#: since: nothing written) or 1 (written).
COMMIT = (
    _PRELUDE
    + r"""
for _, check in ipairs(cjson.decode(ARGV[2])) do
  if redis.sha1hex(cjson.encode(run_query(check[1]))) ~= check[2] then return 0 end
end
for _, op in ipairs(cjson.decode(ARGV[3])) do
  local kind = op[1]
  if kind == 'send' then
    local provider, mid, phone, t, account = op[2], op[3], op[4], op[5], op[6]
    local seq = tostring(redis.call('INCR', P .. 'send-seq'))
    redis.call('HSET', P .. 'send:' .. seq, 'pr', provider, 'm', mid, 'ph', phone, 't', t, 'a', account)
    redis.call('HSET', P .. 'msgid:' .. provider, mid, seq)
    redis.call('ZADD', P .. 'phone:' .. phone, t, seq)
    redis.call('ZADD', P .. 'unsettled:' .. provider, t, seq)
    redis.call('ZADD', P .. 'sends', t, seq)
    local cleared = false  -- recorded late, behind a send to the number that is verified already
    for _, later in ipairs(redis.call('ZRANGEBYSCORE', P .. 'phone:' .. phone, t, '+inf')) do
      if later ~= seq and redis.call('HGET', P .. 'send:' .. later, 'v') then cleared = true break end
    end
    if not cleared then
      local minute = math.floor(tonumber(t) / 60) * 60
      redis.call('ZADD', unverified_key(t), 0, phone .. '|' .. seq)
      redis.call('ZADD', P .. 'unverified-minutes', minute, string.format('%d', minute))
    end
  elseif kind == 'verify' or kind == 'settle' then
    local key = P .. 'send:' .. op[2]
    if kind == 'verify' then
      redis.call('HSET', key, 'v', op[3])
      local f = redis.call('HMGET', key, 'ph', 't')
      clear_unverified(f[1], f[2])
    else
      redis.call('HSET', key, 's', '1')
    end
    redis.call('ZREM', P .. 'unsettled:' .. redis.call('HGET', key, 'pr'), op[2])
  elseif kind == 'report' then
    local mid, phone, provider, st, vt, account, converted = op[2], op[3], op[4], op[5], op[6], op[7], op[8]
    local id = string.format('%016d', redis.call('INCR', P .. 'row-seq'))
    local q = queue(provider, account)
    redis.call('HSET', P .. 'row:' .. id, 'm', mid, 'ph', phone, 'pr', provider, 'a', account, 'c', converted,
      'st', st, 'vt', vt, 'ct', vt, 'nx', vt, 'n', '0', 'state', 'p', 'q', q)
    redis.call('ZADD', P .. 'ready:' .. q, vt, id)
    redis.call('ZADD', P .. 'pending:' .. q, vt, id)
  elseif kind == 'count' then
    local key = P .. 'count:' .. op[3] .. ':' .. op[2]
    local suffix = '|' .. op[5] .. '|' .. op[4]
    redis.call('HINCRBY', key, 'r' .. suffix, op[6])
    redis.call('HINCRBY', key, 'v' .. suffix, op[7])
    redis.call('HINCRBY', key, 'u' .. suffix, op[8])
    redis.call('ZADD', P .. 'count-starts:' .. op[3], op[2], op[2])
  elseif kind == 'spool' then
    redis.call('HSET', P .. 'spools', op[2], op[3])
  else
    error('unknown write ' .. tostring(kind))
  end
end
return 1
"""
)

#: ARGV: prefix, provider, account ('' with ARGV[8] '0': any), limit, lease_until, now, token, '1' if an account
#: was given. Expired leases go back to their ready set first (at most 1000 a call). Returns the rows' fields.
CLAIM = (
    _PRELUDE
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
    _PRELUDE
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
    _PRELUDE
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
    _PRELUDE
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
    _PRELUDE
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
    _PRELUDE
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
    _PRELUDE
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
    _PRELUDE
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

#: ARGV: prefix, index key suffix, hash key suffix, since, until. Returns start, field, value triples of the
#: hashes whose start is in [since, until).
SPANS = r"""
local P = ARGV[1]
local out = {}
for _, start in ipairs(redis.call('ZRANGEBYSCORE', P .. ARGV[2], ARGV[4], '(' .. ARGV[5])) do
  local all = redis.call('HGETALL', P .. ARGV[3] .. start)
  for i = 1, #all, 2 do
    out[#out + 1] = start
    out[#out + 1] = all[i]
    out[#out + 1] = all[i + 1]
  end
end
return out
"""

#: ARGV: prefix, what ('sends', 'reported', 'dead', or 'spans' with index and hash key suffixes and how many
#: fields make a row), bound (exclusive), batch. Deletes up to ``batch`` entries; returns {rows removed,
#: entries looked at}.
PRUNE = (
    _PRELUDE
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

#: ARGV: prefix, number prefix, its upper bound, since, limit. ``unverified_sends``: a ZLEXCOUNT of the range per
#: minute from the one holding ``since``; in that minute, only sends at or after ``since``. Stops at ``limit``.
UNVERIFIED = r"""
local P, lo, hi, since, limit = ARGV[1], '[' .. ARGV[2], '(' .. ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local count = 0
for _, start in ipairs(redis.call('ZRANGEBYSCORE', P .. 'unverified-minutes', math.floor(since / 60) * 60, '+inf')) do
  local key = P .. 'unverified:' .. start
  if tonumber(start) < since then
    local offset = 0
    while count < limit do
      local members = redis.call('ZRANGEBYLEX', key, lo, hi, 'LIMIT', offset, 256)
      if #members == 0 then break end
      offset = offset + #members
      for _, member in ipairs(members) do
        local t = redis.call('HGET', P .. 'send:' .. string.match(member, '|(%d+)$'), 't')
        if t and tonumber(t) >= since then count = count + 1 end
      end
    end
  else
    count = count + redis.call('ZLEXCOUNT', key, lo, hi)
  end
  if count >= limit then return limit end
end
return count
"""

#: ARGV: prefix, since, until, length. ``prefix_counts``: the sends of ``[since, until)`` from ``P sends``, grouped by
#: the first ``length`` characters of their phone; returns head, sends, verified, ... (heads in first-seen order).
PREFIX_COUNTS = r"""
local P, length = ARGV[1], tonumber(ARGV[4])
local order, sends, verified = {}, {}, {}
for _, seq in ipairs(redis.call('ZRANGEBYSCORE', P .. 'sends', ARGV[2], '(' .. ARGV[3])) do
  local f = redis.call('HMGET', P .. 'send:' .. seq, 'ph', 'v')
  if f[1] then
    local head = string.sub(f[1], 1, length)
    if not sends[head] then
      order[#order + 1] = head
      sends[head], verified[head] = 0, 0
    end
    sends[head] = sends[head] + 1
    if f[2] then verified[head] = verified[head] + 1 end
  end
end
local out = {}
for _, head in ipairs(order) do
  out[#out + 1] = head
  out[#out + 1] = sends[head]
  out[#out + 1] = verified[head]
end
return out
"""

#: ARGV: prefix, name, owner, expires_at, now. Returns 1 if ``owner`` holds the lease now.
LEASE = r"""
local P, name, owner, expires_at, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local holder = redis.call('HGET', P .. 'lease-owner', name)
if holder and holder ~= owner and tonumber(redis.call('HGET', P .. 'lease-until', name)) > tonumber(now) then
  return 0
end
redis.call('HSET', P .. 'lease-owner', name, owner)
redis.call('HSET', P .. 'lease-until', name, expires_at)
return 1
"""

#: ARGV: prefix, name, want, interval, horizon, now. ``rules.draw_slots`` on the stored next free slot, with
#: Python's float floor division spelled out (fmod, then the same correction), so both give the same slots.
TAKE_SLOTS = r"""
local P, name = ARGV[1], ARGV[2]
local want, interval, horizon, now = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local state = redis.call('HGET', P .. 'schedules', name)
local first = now
if state and tonumber(state) > now then first = tonumber(state) end
local room = now + horizon - first
local count = 0
if room >= 0 then
  local mod = math.fmod(room, interval)
  local div = (room - mod) / interval
  local floordiv = 0
  if div ~= 0 then
    floordiv = math.floor(div)
    if div - floordiv > 0.5 then floordiv = floordiv + 1 end
  end
  count = math.min(want, floordiv + 1)
end
redis.call('HSET', P .. 'schedules', name, string.format('%.17g', first + count * interval))
return {string.format('%.17g', first), count}
"""

SCRIPTS = {
    "read": READ,
    "commit": COMMIT,
    "claim": CLAIM,
    "settle_held": SETTLE_HELD,
    "retry": RETRY,
    "dead_letter": DEAD_LETTER,
    "expire": EXPIRE,
    "dead_letters": DEAD_LETTERS,
    "replay": REPLAY,
    "stats": STATS,
    "spans": SPANS,
    "prune": PRUNE,
    "lease": LEASE,
    "take_slots": TAKE_SLOTS,
    "unverified": UNVERIFIED,
    "prefix_counts": PREFIX_COUNTS,
}
