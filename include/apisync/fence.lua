-- apisync version fence: one call fences a whole batch, atomically, item by item in batch order.
-- KEYS[1] = the api's generation marker; then the owner-epoch keys of the batch's source partitions;
--           then the ledger keys (each once).
-- ARGV[1] = JSON {a = attempt id, p = {tp = batch start offset}, auth = 0|1,
--                 owners = [[KEYS index, epoch]]  (only when ownership is checked),
--                 items = [[KEYS index, version, data, deleted 0|1, source tp, offset,
--                           older encodings of data? ["." deflate, base85]]]}
-- Returns JSON: ["lost"] | ["fenced"] | ["old_encoding"] (nothing written: call again with the
-- seventh item field set) | one reply per item: [status] or [status, top data, top deleted, top version].
-- The per-item rules are those of the one-observation script this replaced; see apisync/fence.py.
if redis.call('EXISTS', KEYS[1]) == 0 then return cjson.encode({'lost'}) end
local batch = cjson.decode(ARGV[1])
-- Every owner epoch is checked before anything is popped or pushed: a zombie writes nothing.
for _, owner in ipairs(batch.owners) do
  if redis.call('GET', KEYS[owner[1]]) ~= owner[2] then return cjson.encode({'fenced'}) end
end
local attempt, positions, authoritative = batch.a, batch.p, batch.auth == 1

local function from_aborted_attempt(e)
  if e.a == attempt then return false end
  local pos = positions[e.t]
  return pos ~= nil and tonumber(e.o) >= pos
end

-- Equal data? Current states ("~") begin with a hash of the canonical content: equal prefix = equal
-- content. A state packed by an older apisync ("." deflate, or base85 with no marker: equal content =
-- equal text) compares with the item's data in that encoding; nil = not sent yet.
local HASHED_PREFIX = 17  -- '~' and 16 hex digits
local function same_data(top_d, d, older)
  if top_d == d then return true end
  if top_d == '' or d == '' then return false end
  local marker = string.sub(top_d, 1, 1)
  if marker == '~' then return string.sub(top_d, 1, HASHED_PREFIX) == string.sub(d, 1, HASHED_PREFIX) end
  if older == nil then return nil end
  if marker == '.' then return top_d == older[1] end
  return top_d == older[2]
end

local stacks = {}
local function stack_of(k)
  if stacks[k] == nil then
    local raw = redis.call('GET', KEYS[k])
    stacks[k] = raw and cjson.decode(raw) or {}
  end
  return stacks[k]
end

local replies = {}
for i, item in ipairs(batch.items) do
  local k, v, d, x, tp, offset = item[1], item[2], item[3], item[4], item[5], item[6]
  local entries = stack_of(k)
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
      local same = top.x == x and same_data(top.d, d, item[7])
      if same == nil then return cjson.encode({'old_encoding'}) end
      if same then
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
    redis.call('DEL', KEYS[k])
  else
    redis.call('SET', KEYS[k], cjson.encode(entries))
  end
end
return cjson.encode(replies)
