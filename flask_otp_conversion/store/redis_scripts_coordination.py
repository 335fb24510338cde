"""The Redis store's coordination scripts: named leases and the shared schedule of request slots.
Conventions and keys: ``redis_scripts.py``.
"""

from __future__ import annotations

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
