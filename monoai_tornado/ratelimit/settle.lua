-- Settle a run: correct its reservation to the real total, release it and its slot.
-- KEYS[3i-2]: hash user -> used in a token limit's window; KEYS[3i-1]: that window's total;
-- KEYS[3i]: hash user -> tokens reserved by runs in flight; KEYS[#KEYS]: the user's slots.
-- ARGV[1]: user; ARGV[2]: tokens to add (may be negative); ARGV[3]: tokens the run had
-- reserved; ARGV[4]: the run's slot id ("" for none).
-- Windows that have ended (keys gone) and users not counted in them are left alone;
-- no counter goes below 0, and no key is created (so none outlives its window).
local user = ARGV[1]
local delta = tonumber(ARGV[2])
local reserved = tonumber(ARGV[3])
for i = 1, (#KEYS - 1) / 3 do
  local counts, total, holds = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  local used = redis.call("HGET", counts, user)
  if used then
    used = tonumber(used)
    local new = used + delta
    if new < 0 then new = 0 end
    if delta ~= 0 then
      redis.call("HSET", counts, user, new)
      if redis.call("EXISTS", total) == 1 then
        if redis.call("INCRBY", total, new - used) < 0 then
          redis.call("SET", total, 0, "KEEPTTL")
        end
      end
    end
    if reserved > 0 then
      local held = tonumber(redis.call("HGET", holds, user) or "0") - reserved
      if held > 0 then
        redis.call("HSET", holds, user, held)
      else
        redis.call("HDEL", holds, user)
      end
    end
  end
end
if ARGV[4] ~= "" then
  redis.call("ZREM", KEYS[#KEYS], ARGV[4])
end
return 0
