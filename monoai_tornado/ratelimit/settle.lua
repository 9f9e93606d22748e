-- Settle a run: correct its reservations to the real totals, release them and its slot.
-- KEYS[i]: the user's hash in a token or spend limit's window (u: used, h: reserved by runs in
-- flight); KEYS[#KEYS]: the user's slots. Every key is in the user's hash slot.
-- ARGV[1]: user; ARGV[2]: the run's slot id ("" for none); then per key i, from
-- ARGV[3 + 2(i-1)]: what to add (may be negative), what the run had reserved (tokens for a
-- token limit, nano-dollars for a spend limit).
-- Windows that have ended (keys gone) and users not counted in them are left alone;
-- no counter goes below 0, and no key is created (so none outlives its window).
for i = 1, #KEYS - 1 do
  local key = KEYS[i]
  local delta = tonumber(ARGV[1 + 2 * i])
  local reserved = tonumber(ARGV[2 + 2 * i])
  local used = redis.call("HGET", key, "u")
  if used then
    used = tonumber(used)
    local new = used + delta
    if new < 0 then new = 0 end
    if delta ~= 0 then redis.call("HSET", key, "u", string.format("%.0f", new)) end
    if reserved > 0 then
      local held = tonumber(redis.call("HGET", key, "h") or "0") - reserved
      if held > 0 then
        redis.call("HSET", key, "h", string.format("%.0f", held))
      else
        redis.call("HDEL", key, "h")
      end
    end
  end
end
if ARGV[2] ~= "" then
  redis.call("ZREM", KEYS[#KEYS], ARGV[2])
end
return 0
