-- KEYS: (minute sorted set, day hash) per scope. ARGV: n, token, then (per-minute, per-day) limit per scope.
-- Returns: allowed, refused scope (1-based, 0 none), refused window (1 minute, 2 day), retry ms, day number,
-- then per scope: images in the last minute, ms until the oldest of them leaves it (giving room back), images today.
-- Each image is one member "<token>:<i>" scored by its time, so ZCARD counts images and a refund is a ZREM.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = tonumber(ARGV[1])
local token = ARGV[2]
local day = math.floor(now / 86400000)
local day_reset = (day + 1) * 86400000 - now
local scopes = #KEYS / 2
local out = {1, 0, 0, 0, day}
local used = {}
for i = 1, scopes do
  local mkey, dkey = KEYS[2 * i - 1], KEYS[2 * i]
  local mlimit, dlimit = tonumber(ARGV[2 * i + 1]), tonumber(ARGV[2 * i + 2])
  redis.call('ZREMRANGEBYSCORE', mkey, '-inf', now - 60000)
  local mused = redis.call('ZCARD', mkey)
  local dused = 0
  if tonumber(redis.call('HGET', dkey, 'day') or -1) == day then
    dused = tonumber(redis.call('HGET', dkey, 'used') or 0)
  end
  used[i] = {mused, dused}
  if out[1] == 1 then
    if mused + n > mlimit then
      local retry = 60000
      local expiring = mused + n - mlimit
      if expiring <= mused then
        local entry = redis.call('ZRANGE', mkey, expiring - 1, expiring - 1, 'WITHSCORES')
        retry = tonumber(entry[2]) + 60000 - now
      end
      out = {0, i, 1, retry, day}
    elseif dused + n > dlimit then
      out = {0, i, 2, day_reset, day}
    end
  end
end
if out[1] == 1 and n > 0 then
  for i = 1, scopes do
    local mkey, dkey = KEYS[2 * i - 1], KEYS[2 * i]
    local members = {}
    for j = 1, n do
      members[2 * j - 1] = now
      members[2 * j] = token .. ':' .. j
    end
    redis.call('ZADD', mkey, unpack(members))
    redis.call('PEXPIRE', mkey, 60000)
    redis.call('HSET', dkey, 'day', day, 'used', used[i][2] + n)
    redis.call('PEXPIRE', dkey, day_reset + 60000)
    used[i] = {used[i][1] + n, used[i][2] + n}
  end
end
for i = 1, scopes do
  local oldest = redis.call('ZRANGE', KEYS[2 * i - 1], 0, 0, 'WITHSCORES')
  local reset = 0
  if oldest[2] then reset = tonumber(oldest[2]) + 60000 - now end
  table.insert(out, used[i][1])
  table.insert(out, reset)
  table.insert(out, used[i][2])
end
return out
