-- Correct a reservation: add ARGV[2] tokens (may be negative) to ARGV[1]'s token counters.
-- KEYS[2i-1]: hash user -> used in a token limit's window; KEYS[2i]: that window's total.
-- Windows that have ended (keys gone) and users not counted in them are left alone;
-- no counter goes below 0, and no key is created (so none outlives its window).
local user = ARGV[1]
local delta = tonumber(ARGV[2])
for i = 1, #KEYS / 2 do
  local counts, total = KEYS[2 * i - 1], KEYS[2 * i]
  local used = redis.call("HGET", counts, user)
  if used then
    used = tonumber(used)
    local new = used + delta
    if new < 0 then new = 0 end
    redis.call("HSET", counts, user, new)
    if redis.call("EXISTS", total) == 1 then
      if redis.call("INCRBY", total, new - used) < 0 then
        redis.call("SET", total, 0, "KEEPTTL")
      end
    end
  end
end
return 0
