-- Admit one request under every limit, atomically: check all, then count and reserve.
-- KEYS[i]: the user's hash in limit i's current window: u -> used, h -> tokens reserved by runs
-- in flight (token limits); KEYS[#KEYS]: sorted set of the user's runs in flight (id -> expiry
-- in ms), for a concurrency limit. Every key is in the user's hash slot (one cluster node).
-- ARGV[1]: user; ARGV[2]: prompt tokens; ARGV[3]: completion cap asked for (0: none);
-- ARGV[4]: concurrency limit (0: none); ARGV[5]: the run's slot id; ARGV[6]: now in ms;
-- ARGV[7]: ms a slot lives unless refreshed; then per limit i, from ARGV[8 + 3(i-1)]:
--   value, "1" for a token limit ("0" for requests), milliseconds until the window ends.
-- Returns {allowed (1 or 0), granted, used_1, ..., used_n}: granted is the completion tokens
-- reserved (min(cap, left) over the token limits), -1 when refused for the concurrency limit;
-- usage is after the decision. A token limit needs room for the prompt and, with a cap, one
-- completion token. A refused request counts nothing; keys expire when their window ends. The
-- time left is measured by the limiter's clock (PEXPIRE, not PEXPIREAT): a Redis clock that runs
-- ahead of the app servers' cannot delete a window's counters before the window is over.
local user = ARGV[1]
local tokens = tonumber(ARGV[2])
local cap = tonumber(ARGV[3])
local slots = tonumber(ARGV[4])
local n = #KEYS - 1
local need = tokens
if cap > 0 then need = tokens + 1 end
local granted = cap
local result = {1, 0}
for i = 1, n do
  local base = 8 + 3 * (i - 1)
  local value = tonumber(ARGV[base])
  local used = tonumber(redis.call("HGET", KEYS[i], "u") or "0")
  result[i + 2] = used
  if ARGV[base + 1] == "1" then
    if used + need > value then
      result[1] = 0
    elseif value - used - tokens < granted then
      granted = value - used - tokens
    end
  elseif used >= value then
    result[1] = 0
  end
end
if result[1] == 0 then return result end
local slotkey = KEYS[#KEYS]
local now = tonumber(ARGV[6])
if slots > 0 then
  redis.call("ZREMRANGEBYSCORE", slotkey, "-inf", now)  -- slots of dead processes
  if redis.call("ZCARD", slotkey) >= slots then
    result[1] = 0
    result[2] = -1
    return result
  end
end
result[2] = granted
for i = 1, n do
  local base = 8 + 3 * (i - 1)
  local key, ttl = KEYS[i], ARGV[base + 2]
  local cost = 1
  if ARGV[base + 1] == "1" then
    cost = tokens + granted
    if cost > 0 then redis.call("HINCRBY", key, "h", cost) end
  end
  result[i + 2] = redis.call("HINCRBY", key, "u", cost)
  redis.call("PEXPIRE", key, ttl)
end
if slots > 0 then
  redis.call("ZADD", slotkey, now + tonumber(ARGV[7]), ARGV[5])
  redis.call("PEXPIRE", slotkey, ARGV[7])
end
return result
