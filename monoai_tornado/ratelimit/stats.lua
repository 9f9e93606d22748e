-- Fleet-wide figures of the current windows.
-- KEYS[3i-2]: hash user -> used in limit i's window; KEYS[3i-1]: that window's total;
-- KEYS[3i]: hash user -> tokens reserved by runs in flight.
-- ARGV[1]: "0" when one window holds every active user (the windows nest: its user count
-- is the answer), else "1": count the union of users over all windows.
-- Returns {total_1, users_1, reserved_1, ..., total_n, users_n, reserved_n, active_users}.
local n = #KEYS / 3
local result = {}
local active = 0
for i = 1, n do
  result[3 * i - 2] = tonumber(redis.call("GET", KEYS[3 * i - 1]) or "0")
  local users = redis.call("HLEN", KEYS[3 * i - 2])
  result[3 * i - 1] = users
  local reserved = 0
  for _, held in ipairs(redis.call("HVALS", KEYS[3 * i])) do reserved = reserved + tonumber(held) end
  result[3 * i] = reserved
  if users > active then active = users end
end
if ARGV[1] == "1" then
  local seen = {}
  active = 0
  for i = 1, n do
    for _, user in ipairs(redis.call("HKEYS", KEYS[3 * i - 2])) do
      if not seen[user] then seen[user] = true; active = active + 1 end
    end
  end
end
result[3 * n + 1] = active
return result
