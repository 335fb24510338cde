"""The Redis store's records scripts: the records transaction's reads and its checking commit, and the reads of
counters, figures, unverified sends and number prefixes. Conventions and keys: ``redis_scripts.py``.
"""

from __future__ import annotations

from .redis_scripts_prelude import PRELUDE

#: ARGV: prefix, JSON list of queries. Returns (sha1, answer) per query, the answer as JSON.
READ = (
    PRELUDE
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
    PRELUDE
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
