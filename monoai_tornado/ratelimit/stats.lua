-- Fleet-wide figures of the current windows.
-- KEYS[2i-1]: hash user -> used in limit i's window; KEYS[2i]: that window's total.
-- ARGV[1]: "0" when one window holds every active user (the windows nest: its user count
-- is the answer), else "1": count the union of users over all windows.
-- Returns {total_1, users_1, ..., total_n, users_n, active_users}.
local n = #KEYS / 2
local result = {}
local active = 0
for i = 1, n do
  result[2 * i - 1] = tonumber(redis.call("GET", KEYS[2 * i]) or "0")
  local users = redis.call("HLEN", KEYS[2 * i - 1])
  result[2 * i] = users
  if users > active then active = users end
end
if ARGV[1] == "1" then
  local seen = {}
  active = 0
  for i = 1, n do
    for _, user in ipairs(redis.call("HKEYS", KEYS[2 * i - 1])) do
      if not seen[user] then seen[user] = true; active = active + 1 end
    end
  end
end
result[2 * n + 1] = active
return result
