"""The Lua functions every Redis script starts with (one text, so each script reads alone): a send's row and
the records transaction's queries, the unverified-sends index, and an outbox row's queue, lease and end.
Records and outbox scripts share them (a commit enqueues outbox rows; prune clears the unverified index).
"""

from __future__ import annotations

PRELUDE = r"""
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
