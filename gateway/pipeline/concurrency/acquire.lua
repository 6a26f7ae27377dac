-- Take one of an organization's in-flight slots, atomically, on Redis's clock.
-- KEYS[1]: the organization's sorted set of in-flight request ids, scored by their start (ms).
-- ARGV: the request id, the cap, the slot lifetime (ms): a slot older than that is a crashed worker's, dropped.
-- Returns {1, in flight now} when taken, {0, in flight} when the cap is reached.
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local cap = tonumber(ARGV[2])
local lifetime = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - lifetime)
local in_flight = redis.call('ZCARD', KEYS[1])
if in_flight >= cap then
  return {0, in_flight}
end
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('PEXPIRE', KEYS[1], lifetime)
return {1, in_flight + 1}
