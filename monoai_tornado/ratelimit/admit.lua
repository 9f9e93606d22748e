-- Admit one request under every limit, atomically: check all, then count.
-- KEYS[2i-1]: hash user -> used in limit i's current window; KEYS[2i]: that window's total.
-- ARGV[1]: user; ARGV[2]: prompt tokens; then per limit i, from ARGV[3 + 3(i-1)]:
--   value, "1" for a token limit ("0" for requests), milliseconds until the window ends.
-- Returns {allowed (1 or 0), used_1, ..., used_n}: usage after the decision.
-- A refused request counts nothing; keys expire when their window ends. The time left is
-- measured by the limiter's clock (PEXPIRE, not PEXPIREAT): a Redis clock that runs ahead
-- of the app servers' cannot delete a window's counters before the window is over.
local user = ARGV[1]
local tokens = tonumber(ARGV[2])
local n = #KEYS / 2
local result = {1}
local costs = {}
for i = 1, n do
  local base = 3 + 3 * (i - 1)
  local cost = 1
  if ARGV[base + 1] == "1" then cost = tokens end
  costs[i] = cost
  local used = tonumber(redis.call("HGET", KEYS[2 * i - 1], user) or "0")
  result[i + 1] = used
  if used + cost > tonumber(ARGV[base]) then result[1] = 0 end
end
if result[1] == 1 then
  for i = 1, n do
    local counts, total, ttl = KEYS[2 * i - 1], KEYS[2 * i], ARGV[3 + 3 * (i - 1) + 2]
    result[i + 1] = redis.call("HINCRBY", counts, user, costs[i])
    redis.call("INCRBY", total, costs[i])
    redis.call("PEXPIRE", counts, ttl)
    redis.call("PEXPIRE", total, ttl)
  end
end
return result
