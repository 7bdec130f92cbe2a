"""Server-side Lua for the Redis store: each check-and-change is one atomic script, one round trip.

Kept as Python strings (not .lua files) so they ship wherever the package does. Numbers cross as
strings: counters are integers (INCRBY), and a sliding window's weight travels as Python's repr of
the float, which Lua parses back to the same double, so both sides compute the same usage.
Every key a script touches is passed in KEYS (Redis Cluster routes by them).
"""

# KEYS[2i-1], KEYS[2i]: current and previous bucket of window i (the same key for fixed windows); in reserve mode,
#   optionally KEYS[2n+1]: the reservation's ledger (see SETTLE), written when it is admitted
# ARGV[1]: amount (integer); ARGV[2]: mode, 'reserve' | 'charge' | 'peek'
# ARGV[3i], ARGV[3i+1], ARGV[3i+2]: limit, weight of the previous bucket, TTL of the current (ms)
# Returns {refused window (1-based, 0 = none), current_1, previous_1, current_2, previous_2, ...}
WINDOWS = """
local amount = tonumber(ARGV[1])
local mode = ARGV[2]
local n = math.floor(#KEYS / 2)
local out = {0}
local refused = 0
for i = 1, n do
  local current = tonumber(redis.call('GET', KEYS[2 * i - 1]) or '0')
  local weight = tonumber(ARGV[3 * i + 1])
  local previous = 0
  if weight > 0 then
    previous = tonumber(redis.call('GET', KEYS[2 * i]) or '0')
  end
  out[2 * i] = current
  out[2 * i + 1] = previous
  if mode == 'reserve' and refused == 0 then
    local used = previous * weight + current
    local limit = tonumber(ARGV[3 * i])
    if used >= limit or used + amount > limit then
      refused = i
    end
  end
end
if mode ~= 'peek' and refused == 0 and amount ~= 0 then
  local charged = {}  -- windows sharing a bucket charge it once
  for i = 1, n do
    local key = KEYS[2 * i - 1]
    local current = charged[key]
    if current == nil then
      current = redis.call('INCRBY', key, ARGV[1])
      if current < 0 then
        redis.call('SET', key, '0', 'KEEPTTL')
        current = 0
      end
      redis.call('PEXPIRE', key, ARGV[3 * i + 2])
      charged[key] = current
    end
    out[2 * i] = current
  end
end
local ledger = KEYS[2 * n + 1]
if mode == 'reserve' and refused == 0 and ledger then
  local longest = 5  -- the TTL argument of window 1: the ledger lives as long as the longest
  for i = 2, n do
    if tonumber(ARGV[3 * i + 2]) > tonumber(ARGV[longest]) then
      longest = 3 * i + 2
    end
  end
  redis.call('SET', ledger, ARGV[1], 'PX', ARGV[longest])
end
out[1] = refused
return out
"""

# Store.reserve_in_turn in one script: the WINDOWS reservation of several groups, request after request.
# KEYS: per group, the current and previous bucket of each of its windows, then (if it has windows) its ledger;
#   groups in order, request after request
# ARGV[1]: number of requests; per request: its number of groups; per group: amount (integer), number of windows;
#   per window: limit, weight of the previous bucket, TTL of the current (ms)
# Returns, per group tried: refused window (1-based, 0 = none), then current and previous of each window. A refused
# group gives back what its request's earlier groups charged, removes their ledgers (as SETTLE to 0 would) and ends
# the script.
RESERVE_IN_TURN = """
local a = 2
local k = 1
local out = {}
for r = 1, tonumber(ARGV[1]) do
  local taken = {}  -- per admitted group of this request: {ledger, amount, {bucket = true...}}
  local groups = tonumber(ARGV[a])
  a = a + 1
  for g = 1, groups do
    local amount_arg = ARGV[a]
    local amount = tonumber(amount_arg)
    local n = tonumber(ARGV[a + 1])
    a = a + 2
    local keys, ttls, counts = {}, {}, {}
    local refused = 0
    local longest = nil
    for i = 1, n do
      local current = tonumber(redis.call('GET', KEYS[k]) or '0')
      local weight = tonumber(ARGV[a + 1])
      local previous = 0
      if weight > 0 then
        previous = tonumber(redis.call('GET', KEYS[k + 1]) or '0')
      end
      if refused == 0 then
        local used = previous * weight + current
        local limit = tonumber(ARGV[a])
        if used >= limit or used + amount > limit then
          refused = i
        end
      end
      keys[i] = KEYS[k]
      ttls[i] = ARGV[a + 2]
      if longest == nil or tonumber(ttls[i]) > tonumber(longest) then
        longest = ttls[i]
      end
      counts[2 * i - 1] = current
      counts[2 * i] = previous
      k = k + 2
      a = a + 3
    end
    local ledger = nil
    if n > 0 then
      ledger = KEYS[k]
      k = k + 1
    end
    if refused == 0 then
      local charged = {}  -- windows sharing a bucket charge it once
      if amount ~= 0 then
        for i = 1, n do
          local key = keys[i]
          local current = charged[key]
          if current == nil then
            current = redis.call('INCRBY', key, amount_arg)
            if current < 0 then
              redis.call('SET', key, '0', 'KEEPTTL')
              current = 0
            end
            redis.call('PEXPIRE', key, ttls[i])
            charged[key] = current
          end
          counts[2 * i - 1] = current
        end
      end
      if ledger then
        redis.call('SET', ledger, amount_arg, 'PX', longest)
        taken[#taken + 1] = {ledger, amount_arg, charged}
      end
    end
    out[#out + 1] = refused
    for i = 1, 2 * n do
      out[#out + 1] = counts[i]
    end
    if refused ~= 0 then
      for _, t in ipairs(taken) do
        redis.call('DEL', t[1])
        for key, _ in pairs(t[3]) do
          local current = redis.call('GET', key)
          if current then
            if tonumber(current) - tonumber(t[2]) < 0 then
              redis.call('SET', key, '0', 'KEEPTTL')
            else
              redis.call('DECRBY', key, t[2])
            end
          end
        end
      end
      return out
    end
  end
end
return out
"""

# Settles reservations, each once. KEYS: per reservation, the buckets it charged, then its ledger (the record WINDOWS
# or RESERVE_IN_TURN wrote when they admitted it, holding the amount charged). ARGV[1]: number of reservations; per
# reservation: the actual amount (integer; '0' gives it all back), its number of buckets, then the ms each still lives.
# A reservation without its ledger is left alone: it never landed, or was settled already (a retry of a call whose
# outcome was unknown). Otherwise each of its buckets gets actual - amount (never below zero; a missing one is created
# only to add to it) and the ledger goes: an exact settlement only removes its ledger. Returns how many it settled.
SETTLE = """
local a = 2
local k = 1
local settled = 0
for r = 1, tonumber(ARGV[1]) do
  local n = tonumber(ARGV[a + 1])
  local ledger = KEYS[k + n]
  local held = redis.call('GET', ledger)
  if held then
    redis.call('DEL', ledger)
    settled = settled + 1
    local delta = tonumber(ARGV[a]) - tonumber(held)
    if delta ~= 0 then
      local step = string.format('%d', delta)
      for i = 0, n - 1 do
        local key = KEYS[k + i]
        local current = redis.call('GET', key)
        if current then
          if tonumber(current) + delta < 0 then
            redis.call('SET', key, '0', 'KEEPTTL')
          else
            redis.call('INCRBY', key, step)
          end
        elseif delta > 0 then
          redis.call('SET', key, step, 'PX', ARGV[a + 2 + i])
        end
      end
    end
  end
  k = k + n + 1
  a = a + n + 2
end
return settled
"""

# KEYS[1]: counter; ARGV[1]: amount; ARGV[2]: 'int' | 'float'; ARGV[3]: TTL ms ('0': none)
# The TTL is set only when the key has none, so a counter lives TTL from its first increment.
INCR = """
local value
if ARGV[2] == 'float' then
  value = redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
else
  value = redis.call('INCRBY', KEYS[1], ARGV[1])
end
if ARGV[3] ~= '0' and redis.call('PTTL', KEYS[1]) == -1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return value
"""

# KEYS[1]: hash; ARGV[1]: TTL ms ('0': keep the current expiry); ARGV[2..]: field, value, ...
HSET = """
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
if ARGV[1] ~= '0' then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return 0
"""

# A vector namespace is five keys sharing one hash tag, plus one key per payload:
#   vec   hash  id -> unit vector (float32 bytes)
#   exp   zset  id -> expiry (epoch ms, +inf: none; 0: deleted)
#   log   zset  id -> sequence number of its last change (mirrors pull what changed since theirs)
#   seq   the last sequence number
#   epoch a random token set by the first put: a mirror that sees another one reloads everything
# Expired entries need no news: mirrors know every expiry and drop them on their own.

# KEYS: vec, exp, log, seq, epoch, payload
# ARGV: id, vector, expiry ms ('+inf'), payload, TTL ms ('0': none), now ms, new epoch, sweep limit
# Returns {epoch, sequence number of this put}
VECTOR_PUT = """
local stale = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[6], 'LIMIT', 0, tonumber(ARGV[8]))
for _, id in ipairs(stale) do
  redis.call('HDEL', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
  redis.call('ZREM', KEYS[3], id)
end
redis.call('SET', KEYS[5], ARGV[7], 'NX')
local seq = redis.call('INCR', KEYS[4])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('ZADD', KEYS[3], seq, ARGV[1])
if ARGV[5] == '0' then
  redis.call('SET', KEYS[6], ARGV[4])
else
  redis.call('SET', KEYS[6], ARGV[4], 'PX', ARGV[5])
end
return {redis.call('GET', KEYS[5]), seq}
"""

# KEYS: vec, exp, log, seq, payload; ARGV[1]: id
VECTOR_DELETE = """
if redis.call('HDEL', KEYS[1], ARGV[1]) == 1 then
  local seq = redis.call('INCR', KEYS[4])
  redis.call('ZADD', KEYS[2], 0, ARGV[1])
  redis.call('ZADD', KEYS[3], seq, ARGV[1])
end
redis.call('DEL', KEYS[5])
return 0
"""

# KEYS: vec, exp, log, seq, epoch
# ARGV[1]: the mirror's epoch ('' if none); ARGV[2]: its sequence number; ARGV[3]: batch size
# Returns {epoch ('' if none), sequence, ids, vectors ('' = deleted), expiries, last}: up to a batch
# of entries changed after the mirror's sequence (after 0 when the epochs differ); last is the
# sequence number of the last one returned.
VECTOR_SYNC = """
local epoch = redis.call('GET', KEYS[5]) or ''
local seq = redis.call('GET', KEYS[4]) or '0'
local since = ARGV[2]
if epoch ~= ARGV[1] then
  since = '0'
end
local rows = redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. since, '+inf',
                       'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[3]))
local ids, vectors, expiries = {}, {}, {}
local last = since
for i = 1, #rows, 2 do
  local id = rows[i]
  ids[#ids + 1] = id
  vectors[#vectors + 1] = redis.call('HGET', KEYS[1], id) or ''
  expiries[#expiries + 1] = redis.call('ZSCORE', KEYS[2], id) or '0'
  last = rows[i + 1]
end
return {epoch, seq, ids, vectors, expiries, last}
"""

# KEYS: payload keys (one hash slot); returns their values (nil for gone ones)
MGET = """
return redis.call('MGET', unpack(KEYS))
"""
