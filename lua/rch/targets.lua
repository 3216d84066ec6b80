--- Targeting: which workers a --worker/--exclude list names, and folding
-- lists of ids back into that notation for output. One parser for every
-- command that takes workers and for the rch.fleet API.
--
-- A list is comma-separated (commas inside [] belong to a range). Each item:
--   build-01        an exact id
--   build-*  w?     a glob (* any run of characters, ? one character)
--   w[1-32]         a ClusterShell nodeset: ranges and single numbers,
--   gpu-[01-08,12]  zero padding kept (01-08 is 01, 02, … 08)
--   @gpu            the workers whose tags include "gpu"
--   @failed         the workers that did not end Completed or Skipped in the
--                   newest deployment
-- An item that matches no worker is an error naming it and the nearest ids.
local M = {}

local MAX_EXPANSION = 1000000

--- Splits "a,w[1-3,5],b" at the commas outside brackets.
-- @return list of items, or nil, err for unbalanced brackets
function M.split(text)
  local items, depth, start = {}, 0, 1
  for i = 1, #text do
    local c = text:sub(i, i)
    if c == "[" then
      depth = depth + 1
    elseif c == "]" then
      depth = depth - 1
      if depth < 0 then return nil, ("'%s': ']' without '['"):format(text) end
    elseif c == "," and depth == 0 then
      items[#items + 1] = text:sub(start, i - 1)
      start = i + 1
    end
  end
  if depth ~= 0 then return nil, ("'%s': '[' without ']'"):format(text) end
  items[#items + 1] = text:sub(start)
  local out = {}
  for _, item in ipairs(items) do
    item = item:match("^%s*(.-)%s*$")
    if item ~= "" then out[#out + 1] = item end
  end
  return out
end

-- "1-3,05,7-9" -> {"1","2","3","05","7","8","9"}, or nil, err
local function expand_ranges(spec, item)
  local out = {}
  for part in (spec .. ","):gmatch("([^,]*),") do
    local lo, hi = part:match("^(%d+)%-(%d+)$")
    if not lo then lo = part:match("^(%d+)$") hi = lo end
    if not lo then return nil, ("'%s': '%s' is not a number or a range like 1-32"):format(item, part) end
    local a, b = tonumber(lo), tonumber(hi)
    if b < a then return nil, ("'%s': range %s runs backwards"):format(item, part) end
    if #out + (b - a) > MAX_EXPANSION then return nil, ("'%s': more than %d names"):format(item, MAX_EXPANSION) end
    local fmt = (lo:sub(1, 1) == "0" and #lo > 1) and ("%0" .. #lo .. "d") or "%d"
    for n = a, b do out[#out + 1] = fmt:format(n) end
  end
  return out
end

--- Expands the nodeset ranges of one item ("w[1-2]-[a]" is refused; "r[1-2]n[1-2]" gives 4 names).
-- @return list of names (may contain glob characters), or nil, err
function M.expand(item)
  local open = item:find("[", 1, true)
  if not open then return { item } end
  local close = item:find("]", open, true)
  local heads, err = expand_ranges(item:sub(open + 1, close - 1), item)
  if not heads then return nil, err end
  local tails
  tails, err = M.expand(item:sub(close + 1))
  if not tails then return nil, err end
  if #heads * #tails > MAX_EXPANSION then return nil, ("'%s': more than %d names"):format(item, MAX_EXPANSION) end
  local prefix, out = item:sub(1, open - 1), {}
  for _, h in ipairs(heads) do
    for _, t in ipairs(tails) do out[#out + 1] = prefix .. h .. t end
  end
  return out
end

local function glob_pattern(glob)
  return "^" .. glob:gsub("[%^%$%(%)%%%.%[%]%+%-]", "%%%0"):gsub("%*", ".*"):gsub("%?", ".") .. "$"
end

-- Levenshtein distance, for "nearest ids" in errors.
local function distance(a, b)
  local prev = {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = { [0] = i }
    for j = 1, #b do
      local cost = a:byte(i) == b:byte(j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev = cur
  end
  return prev[#b]
end

--- The ids nearest to `word` (at most `n`, nearest first).
function M.nearest(word, ids, n)
  local scored = {}
  for _, id in ipairs(ids) do scored[#scored + 1] = { id = id, d = distance(word, id) } end
  table.sort(scored, function(x, y) return x.d < y.d or (x.d == y.d and x.id < y.id) end)
  local out = {}
  for i = 1, math.min(n or 5, #scored) do out[i] = scored[i].id end
  return out
end

-- Ids (a set) that one item names among `workers`.
-- @param ctx {failed = function() -> set of ids, or nil, err}
local function match_item(item, workers, ctx)
  local hit = {}
  if item == "@failed" then
    local failed, err = ctx.failed()
    if not failed then return nil, err end
    for _, w in ipairs(workers) do if failed[w.id] then hit[w.id] = true end end
    return hit
  end
  if item:sub(1, 1) == "@" then
    local tag = item:sub(2)
    for _, w in ipairs(workers) do
      for _, t in ipairs(w.tags or {}) do if t == tag then hit[w.id] = true end end
    end
    return hit
  end
  local names, err = M.expand(item)
  if not names then return nil, err end
  local by_id = {}
  for _, w in ipairs(workers) do by_id[w.id] = true end
  for _, name in ipairs(names) do
    if name:find("[%*%?]") then
      local pat = glob_pattern(name)
      for _, w in ipairs(workers) do if w.id:match(pat) then hit[w.id] = true end end
    elseif by_id[name] then
      hit[name] = true
    end
  end
  return hit
end

-- Every id that a list of patterns names; an item naming nothing is an error.
local function match_list(list, flag, workers, ctx)
  local ids = {}
  for _, w in ipairs(workers) do ids[#ids + 1] = w.id end
  local union = {}
  for _, text in ipairs(list) do
    local items, err = M.split(text)
    if not items then return nil, flag .. " " .. err end
    for _, item in ipairs(items) do
      local hit
      hit, err = match_item(item, workers, ctx)
      if not hit then return nil, flag .. " " .. err end
      if next(hit) == nil then
        local hint = item == "@failed" and "" or
          ("; nearest: %s"):format(table.concat(M.nearest(item, ids, 5), ", "))
        return nil, ("%s '%s' matches no worker%s"):format(flag, item, #ids > 0 and hint or "")
      end
      for id in pairs(hit) do union[id] = true end
    end
  end
  return union
end

local function as_list(selection)
  if selection == nil or selection == "" then return {} end
  if type(selection) == "string" then return { selection } end
  return selection
end

--- The workers a --worker list (all when empty) minus an --exclude list name,
-- in inventory order.
-- @param workers the inventory
-- @param include string or list of strings (nil or empty: every worker)
-- @param exclude string or list of strings (nil or empty: none)
-- @param ctx {failed = function} resolving @failed
-- @return list of workers, or nil, err naming the item
function M.select(workers, include, exclude, ctx)
  ctx = ctx or {}
  ctx.failed = ctx.failed or function() return nil, "@failed: no deployment history here" end
  include, exclude = as_list(include), as_list(exclude)
  local wanted, err
  if #include > 0 then
    wanted, err = match_list(include, "--worker", workers, ctx)
    if not wanted then return nil, err end
  end
  local unwanted = {}
  if #exclude > 0 then
    unwanted, err = match_list(exclude, "--exclude", workers, ctx)
    if not unwanted then return nil, err end
  end
  local out = {}
  for _, w in ipairs(workers) do
    if (not wanted or wanted[w.id]) and not unwanted[w.id] then out[#out + 1] = w end
  end
  return out
end

--- Folds ids into nodeset notation: {"w1","w2","w3","w5","db"} -> "w[1-3,5],db".
-- Ids group by the text around their last number (and its zero padding);
-- groups keep the order in which they first appear.
function M.fold(ids)
  local groups, order = {}, {}
  for _, id in ipairs(ids) do
    local prefix, digits, suffix = id:match("^(.-)(%d+)(%D*)$")
    local key, num, width
    if prefix then
      width = (digits:sub(1, 1) == "0" and #digits > 1) and #digits or 0
      key, num = prefix .. "\0" .. suffix .. "\0" .. width, tonumber(digits)
    else
      key = id
    end
    if not groups[key] then
      groups[key] = { prefix = prefix, suffix = suffix, width = width, nums = {}, id = id }
      order[#order + 1] = key
    end
    if num then table.insert(groups[key].nums, num) end
  end
  local parts = {}
  for _, key in ipairs(order) do
    local g = groups[key]
    if not g.prefix then
      parts[#parts + 1] = g.id
    else
      table.sort(g.nums)
      local fmt = g.width > 0 and ("%0" .. g.width .. "d") or "%d"
      local ranges, i = {}, 1
      while i <= #g.nums do
        local j = i
        while j < #g.nums and g.nums[j + 1] <= g.nums[j] + 1 do j = j + 1 end
        ranges[#ranges + 1] = g.nums[i] == g.nums[j] and fmt:format(g.nums[i])
          or (fmt .. "-" .. fmt):format(g.nums[i], g.nums[j])
        i = j + 1
      end
      if #g.nums == 1 then
        parts[#parts + 1] = g.prefix .. ranges[1] .. g.suffix
      else
        parts[#parts + 1] = g.prefix .. "[" .. table.concat(ranges, ",") .. "]" .. g.suffix
      end
    end
  end
  return table.concat(parts, ",")
end

return M
