-- KEYS as in consume.lua: (minute sorted set, day hash) per scope. ARGV: n, token, day number of the consumption.
local n = tonumber(ARGV[1])
for i = 1, #KEYS / 2 do
  local mkey, dkey = KEYS[2 * i - 1], KEYS[2 * i]
  for j = 1, n do redis.call('ZREM', mkey, ARGV[2] .. ':' .. j) end
  if tonumber(redis.call('HGET', dkey, 'day') or -1) == tonumber(ARGV[3]) then
    if redis.call('HINCRBY', dkey, 'used', -n) < 0 then redis.call('HSET', dkey, 'used', 0) end
  end
end
return 1
