-- apisync shared rate limiter: GCRA with priority lanes, a global pause and quota-driven caps.
-- Every time comes from Redis TIME (microseconds), never from a worker's clock.
-- KEYS[1] = state hash (tat, pause_until, cap_rate, cap_until)
-- KEYS[2..] = one sorted set per lane, best lane first: waiting request ids scored by expiry (us).
-- ARGV[1] = op: "acquire" | "pause" | "observe"; all return {granted, wait_us, now_us}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local state_ttl_s = 172800
local op = ARGV[1]

local function number(field)
  return tonumber(redis.call('HGET', KEYS[1], field))
end

local function extend_pause(until_us)
  local current = number('pause_until') or 0
  if until_us > current then
    redis.call('HSET', KEYS[1], 'pause_until', string.format('%.0f', until_us))
  end
  redis.call('EXPIRE', KEYS[1], state_ttl_s)
  return math.max(current, until_us)
end

local function effective_rate(rate)
  local cap = number('cap_rate')
  local cap_until = number('cap_until') or 0
  if cap and cap_until > now and cap < rate then return cap end
  return rate
end

-- A lower lane waits while any better lane has a live waiter, so backfill never starves webhooks.
local function better_lane_waiting(rank)
  for r = 1, rank - 1 do
    redis.call('ZREMRANGEBYSCORE', KEYS[1 + r], '-inf', now)
    if redis.call('ZCARD', KEYS[1 + r]) > 0 then return true end
  end
  return false
end

local function acquire()
  local rank, id = tonumber(ARGV[2]), ARGV[3]
  local interval = 1000000 / effective_rate(tonumber(ARGV[4]))
  local tolerance = (tonumber(ARGV[5]) - 1) * interval
  local grace = tonumber(ARGV[6])
  local tat = math.max(number('tat') or now, now)
  local wait = math.max(0, (number('pause_until') or 0) - now, tat - tolerance - now)
  if wait == 0 and better_lane_waiting(rank) then wait = interval end
  local mine = KEYS[1 + rank]
  if wait > 0 then
    redis.call('ZADD', mine, now + wait + grace, id)
    redis.call('PEXPIRE', mine, math.ceil((wait + grace) / 1000) + 1000)
    return {0, math.ceil(wait), now}
  end
  redis.call('ZREM', mine, id)
  redis.call('HSET', KEYS[1], 'tat', string.format('%.0f', tat + interval))
  redis.call('EXPIRE', KEYS[1], state_ttl_s)
  return {1, 0, now}
end

-- remaining/limit of the API's own quota; reset_us < 0 means a rolling window (no reset time).
local function observe()
  local remaining, limit = tonumber(ARGV[2]), tonumber(ARGV[3])
  local reset, rate, min_rate = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
  local headroom, rolling_pause, rolling_ttl = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
  if remaining <= 0 then
    local until_us = (reset >= 0 and reset > now) and reset or now + rolling_pause
    return {0, extend_pause(until_us) - now, now}
  end
  if limit <= 0 or remaining >= limit * headroom then
    redis.call('HDEL', KEYS[1], 'cap_rate', 'cap_until')
    return {1, 0, now}
  end
  local cap, cap_until
  if reset >= 0 then
    -- Spread what is left evenly until the window resets.
    cap = remaining / math.max(1, (reset - now) / 1000000)
    cap_until = math.max(reset, now + 1000000)
  else
    cap = rate * remaining / (limit * headroom)
    cap_until = now + rolling_ttl
  end
  cap = math.max(min_rate, math.min(rate, cap))
  redis.call('HSET', KEYS[1], 'cap_rate', tostring(cap), 'cap_until', string.format('%.0f', cap_until))
  redis.call('EXPIRE', KEYS[1], state_ttl_s)
  return {1, 0, now}
end

if op == 'acquire' then return acquire() end
if op == 'pause' then
  return {0, extend_pause(now + tonumber(ARGV[2])) - now, now}
end
if op == 'observe' then return observe() end
return redis.error_reply('apisync ratelimit: unknown op ' .. tostring(op))
