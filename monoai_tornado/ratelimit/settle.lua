-- Settle a run: correct its reservation to the real total, release it and its slot.
-- KEYS[i]: the user's hash in a token limit's window (u: used, h: reserved by runs in flight);
-- KEYS[#KEYS]: the user's slots. Every key is in the user's hash slot.
-- ARGV[1]: user; ARGV[2]: tokens to add (may be negative); ARGV[3]: tokens the run had
-- reserved; ARGV[4]: the run's slot id ("" for none).
-- Windows that have ended (keys gone) and users not counted in them are left alone;
-- no counter goes below 0, and no key is created (so none outlives its window).
local user = ARGV[1]
local delta = tonumber(ARGV[2])
local reserved = tonumber(ARGV[3])
for i = 1, #KEYS - 1 do
  local key = KEYS[i]
  local used = redis.call("HGET", key, "u")
  if used then
    used = tonumber(used)
    local new = used + delta
    if new < 0 then new = 0 end
    if delta ~= 0 then redis.call("HSET", key, "u", new) end
    if reserved > 0 then
      local held = tonumber(redis.call("HGET", key, "h") or "0") - reserved
      if held > 0 then
        redis.call("HSET", key, "h", held)
      else
        redis.call("HDEL", key, "h")
      end
    end
  end
end
if ARGV[4] ~= "" then
  redis.call("ZREM", KEYS[#KEYS], ARGV[4])
end
return 0
