-- Settle a run: correct its reservations to the real totals, release them and its slot.
-- KEYS[i]: the user's hash in a limit's window (u: used, h: reserved by runs in flight);
-- KEYS[#KEYS - 1]: the user's slots; KEYS[#KEYS]: the admission's record (see admit.lua).
-- Every key is in the user's hash slot.
-- ARGV[1]: user; ARGV[2]: the run's slot id ("" for none); then per key i, from
-- ARGV[3 + 2(i-1)]: what to add (may be negative), what the run had reserved (tokens for a
-- token limit, nano-dollars for a spend limit); then the mode: "" (no record), "s" (settle once:
-- a settle retried after a lost reply counts once) or "r" (release: undo what the record says
-- the admission added, for one whose reply never arrived: KEYS are then admit.lua's, in its
-- order); then ms the record lives from now (settled, it is kept only for a settle's retry).
-- Windows that have ended (keys gone) and users not counted in them are left alone;
-- no counter goes below 0, and no window key is created (so none outlives its window).
local n = #KEYS - 2
local record = KEYS[#KEYS]
local mode = ARGV[3 + 2 * n]
if mode ~= "" then
  local first = redis.call("HSETNX", record, "s", "1")
  redis.call("PEXPIRE", record, ARGV[4 + 2 * n])
  if first == 0 then return 0 end  -- settled (or released) already
end
if mode == "r" and redis.call("HEXISTS", record, "r") == 0 then
  redis.call("HSET", record, "x", "1")  -- never admitted: a late copy of the admission is refused
end
for i = 1, n do
  local key = KEYS[i]
  local delta = tonumber(ARGV[1 + 2 * i])
  local reserved = tonumber(ARGV[2 + 2 * i])
  if mode == "r" then
    local added = redis.call("HMGET", record, "c" .. i, "h" .. i)  -- the keys are admit.lua's
    delta = -tonumber(added[1] or "0")
    reserved = tonumber(added[2] or "0")
  end
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
  redis.call("ZREM", KEYS[#KEYS - 1], ARGV[2])
end
return 0
