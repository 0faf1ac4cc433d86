-- apisync version fence: one call fences a whole batch, atomically, item by item in batch order.
-- KEYS[1] = the api's generation marker; KEYS[2] = its judged offsets (hash: `~generation` = the marker's
--           value, then source tp -> the offset the ledger has judged up to); KEYS[3] = its key set (every
--           ledger key that holds states, and "~"); then the owner-epoch keys of the batch's source
--           partitions; then the ledger keys (each once).
-- ARGV[1] = JSON {a = attempt id, p = {tp = batch start offset}, auth = 0|1,
--                 c = {tp = offset Kafka has committed}, e = {tp = offset the batch is judged to}?,
--                 k = where the record key starts in a ledger key,
--                 owners = [[KEYS index, epoch]]  (only when ownership is checked),
--                 items = [[KEYS index, version, data, deleted 0|1, source tp, offset]]}
-- Returns JSON: ["lost", why] | ["fenced"] | one reply per item: [status] or
-- [status, top data, top deleted, top version].
-- The per-item rules are those of the one-observation script this replaced; see apisync/fence.py.
local generation = redis.call('GET', KEYS[1])
if not generation then return cjson.encode({'lost', 'no generation marker'}) end
local batch = cjson.decode(ARGV[1])

-- Redis lost writes Kafka kept (or keys were evicted): nothing is judged, and the marker goes, so that
-- every normalizer of the api waits while one rebuilds.
local function lost(why)
  redis.call('DEL', KEYS[1])
  return cjson.encode({'lost', why})
end
if redis.call('HGET', KEYS[2], '~generation') ~= generation then
  return lost('the judged offsets are gone')
end
if redis.call('EXISTS', KEYS[3]) == 0 then return lost('the key set is gone') end
for tp, committed in pairs(batch.c) do
  if tonumber(redis.call('HGET', KEYS[2], tp) or '0') < committed then
    return lost('judged ' .. tp .. ' below its committed offset')
  end
end
-- Every owner epoch is checked before anything is popped or pushed: a zombie writes nothing. An epoch
-- below the one this owner was given means Redis lost the claim: it went back in time.
for _, owner in ipairs(batch.owners) do
  local stored = redis.call('GET', KEYS[owner[1]])
  if stored ~= owner[2] then
    if tonumber(stored or '0') < tonumber(owner[2]) then return lost('an owner epoch went back') end
    return cjson.encode({'fenced'})
  end
end
local attempt, positions, authoritative = batch.a, batch.p, batch.auth == 1

local function from_aborted_attempt(e)
  if e.a == attempt then return false end
  local pos = positions[e.t]
  return pos ~= nil and tonumber(e.o) >= pos
end

-- Equal data? A state ("~", see apisync/ledger_states.py) begins with a hash of the canonical content:
-- equal prefix = equal content, whatever bytes the compressor made of it. "" is a delete's.
local HASHED_PREFIX = 17  -- '~' and 16 hex digits
local function same_data(top_d, d)
  if top_d == '' or d == '' then return top_d == d end
  return string.sub(top_d, 1, HASHED_PREFIX) == string.sub(d, 1, HASHED_PREFIX)
end

local stacks, existed = {}, {}
local function member(k) return string.sub(KEYS[k], batch.k) end
local function stack_of(k)
  if stacks[k] == nil then
    local raw = redis.call('GET', KEYS[k])
    -- a key the set names but Redis no longer holds was evicted or lost: "new" would re-create it
    if not raw and redis.call('SISMEMBER', KEYS[3], member(k)) == 1 then return nil end
    existed[k] = raw ~= false
    stacks[k] = raw and cjson.decode(raw) or {}
  end
  return stacks[k]
end

local ends = batch.e or {}  -- per tp, the offset after the last one judged by this call
local function judged_to(tp, offset)
  local after = tonumber(offset) + 1
  if (ends[tp] or 0) < after then ends[tp] = after end
end

local replies = {}
for i, item in ipairs(batch.items) do
  local k, v, d, x, tp, offset = item[1], item[2], item[3], item[4], item[5], item[6]
  local entries = stack_of(k)
  if entries == nil then return lost('ledger key ' .. KEYS[k] .. ' is missing') end
  judged_to(tp, offset)
  while #entries > 0 and from_aborted_attempt(entries[#entries]) do
    table.remove(entries)
  end
  local top = entries[#entries]
  local version = tonumber(v)
  local status, push = 'accepted', true
  if top then
    local top_version = tonumber(top.v)
    if version < top_version then
      status = 'stale'; push = false
    elseif version == top_version and top.x == 1 and x ~= 1 then
      status = 'stale'; push = false
    else
      if top.x == x and same_data(top.d, d) then
        status = 'unchanged'; push = version > top_version
      elseif version == top_version and top.x ~= 1 and x ~= 1 and not authoritative then
        status = 'conflict'; push = false
      end
    end
  end
  if push then
    table.insert(entries, {v = v, d = d, x = x, t = tp, o = offset, a = attempt})
    -- keep the newest state of another attempt (the committed one) and everything of this attempt
    local keep_from = 1
    for j = #entries, 1, -1 do
      if entries[j].a ~= attempt then keep_from = j; break end
    end
    local kept = {}
    for j = keep_from, #entries do table.insert(kept, entries[j]) end
    stacks[k] = kept
  end
  if top then
    replies[i] = {status, top.d, top.x, top.v}
  else
    replies[i] = {status}
  end
end
for k, entries in pairs(stacks) do
  if #entries == 0 then
    if existed[k] then
      redis.call('DEL', KEYS[k])
      redis.call('SREM', KEYS[3], member(k))
    end
  else
    redis.call('SET', KEYS[k], cjson.encode(entries))
    if not existed[k] then redis.call('SADD', KEYS[3], member(k)) end
  end
end
-- Written with the states they cover: a Redis that loses the states loses these too, and a later call
-- finds them below Kafka's committed offsets.
for tp, after in pairs(ends) do
  if tonumber(redis.call('HGET', KEYS[2], tp) or '0') < after then
    redis.call('HSET', KEYS[2], tp, string.format('%d', after))
  end
end
return cjson.encode(replies)
