-- Admit one request under every limit, atomically: check all, then count and reserve.
-- KEYS[i]: the user's hash in limit i's current window: u -> used, h -> tokens (nano-dollars)
-- reserved by runs in flight (token and spend limits); KEYS[#KEYS - 1]: sorted set of the user's runs
-- in flight (id -> expiry in ms), for a concurrency limit; KEYS[#KEYS]: the admission's record
-- (hash: r -> the reply, c<i> -> what it added to KEYS[i]'s u, h<i> -> to its h; x -> released),
-- written when admitted. Every key is in the user's hash slot.
-- ARGV[1]: user; ARGV[2]: prompt tokens; ARGV[3]: completion cap asked for (0: none);
-- ARGV[4]: concurrency limit (0: none); ARGV[5]: the run's slot id; ARGV[6]: now in ms;
-- ARGV[7]: ms a slot lives unless refreshed; ARGV[8]: the prompt's cost in pico-dollars;
-- ARGV[9]: pico-dollars per completion token; ARGV[10]: the admission id ("": no record);
-- ARGV[11]: ms the record lives; then per limit i, from ARGV[12 + 3(i-1)]:
--   value, kind ("0" requests, "1" tokens, "2" nano-dollars), milliseconds until the window ends.
-- Returns {allowed (1 or 0), granted, used_1, ..., used_n}: granted is the completion tokens
-- reserved (min(cap, left) over the token limits, and what the money left buys under the spend
-- limits), -1 when refused for the concurrency limit; usage is after the decision. A token limit
-- needs room for the prompt and, with a cap, one completion token; a spend limit for their cost.
-- A spend limit reserves round_half_up((prompt picos + granted * per token) / 1000) nano-dollars.
-- A refused request counts nothing; keys expire when their window ends. The time left is
-- measured by the limiter's clock (PEXPIRE, not PEXPIREAT): a Redis clock that runs ahead of
-- the app servers' cannot delete a window's counters before the window is over.
-- An admission retried with the same id (its first reply was lost) gets the recorded reply and
-- counts nothing more; one released meanwhile (see settle.lua) is refused and counts nothing.
local function nanos(picos) return math.floor((picos + 500) / 1000) end
-- Numbers go to Redis as integer text ("%.0f"): Lua's own tostring would write 1e+15.
local user = ARGV[1]
local tokens = tonumber(ARGV[2])
local cap = tonumber(ARGV[3])
local slots = tonumber(ARGV[4])
local prompt_picos = tonumber(ARGV[8])
local per_token = tonumber(ARGV[9])
local n = #KEYS - 2
local record = KEYS[#KEYS]
local id = ARGV[10]
if id ~= "" then
  local seen = redis.call("HMGET", record, "r", "x")
  if seen[1] then
    local reply = {}
    for value in string.gmatch(seen[1], "[^,]+") do reply[#reply + 1] = tonumber(value) end
    return reply
  end
  if seen[2] then
    local refused = {0, 0}
    for i = 1, n do refused[i + 2] = 0 end
    return refused
  end
end
local need = tokens
local money_need = nanos(prompt_picos)
if cap > 0 then
  need = tokens + 1
  money_need = nanos(prompt_picos + per_token)
end
local granted = cap
local result = {1, 0}
for i = 1, n do
  local base = 12 + 3 * (i - 1)
  local value = tonumber(ARGV[base])
  local kind = ARGV[base + 1]
  local used = tonumber(redis.call("HGET", KEYS[i], "u") or "0")
  result[i + 2] = used
  if kind == "2" then
    if used + money_need > value then
      result[1] = 0
    elseif per_token > 0 and nanos(prompt_picos + granted * per_token) > value - used then
      granted = math.floor((1000 * (value - used) + 499 - prompt_picos) / per_token)
    end
  elseif kind == "1" then
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
local slotkey = KEYS[#KEYS - 1]
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
local spend = nanos(prompt_picos + granted * per_token)
for i = 1, n do
  local base = 12 + 3 * (i - 1)
  local key, kind, ttl = KEYS[i], ARGV[base + 1], ARGV[base + 2]
  local cost = 1
  if kind ~= "0" then
    cost = tokens + granted
    if kind == "2" then cost = spend end
    if cost > 0 then redis.call("HINCRBY", key, "h", string.format("%.0f", cost)) end
  end
  result[i + 2] = redis.call("HINCRBY", key, "u", string.format("%.0f", cost))
  redis.call("PEXPIRE", key, ttl)
  if id ~= "" then
    redis.call("HSET", record, "c" .. i, string.format("%.0f", cost))
    if kind ~= "0" then redis.call("HSET", record, "h" .. i, string.format("%.0f", cost)) end
  end
end
if slots > 0 then
  redis.call("ZADD", slotkey, now + tonumber(ARGV[7]), ARGV[5])
  redis.call("PEXPIRE", slotkey, ARGV[7])
end
if id ~= "" then
  local parts = {}
  for i = 1, #result do parts[i] = string.format("%.0f", result[i]) end
  redis.call("HSET", record, "r", table.concat(parts, ","))
  redis.call("PEXPIRE", record, ARGV[11])
end
return result
