-- rch.targets: the --worker/--exclude patterns and folding, against an inventory.
local targets = require "rch.targets"

local function inventory(ids, tags)
  local out = {}
  for _, id in ipairs(ids) do out[#out + 1] = { id = id, tags = (tags or {})[id] or {} } end
  return out
end
local function ids_of(list)
  local out = {}
  for _, w in ipairs(list) do out[#out + 1] = w.id end
  return table.concat(out, " ")
end
local function sel(inv, include, exclude, ctx)
  local r, err = targets.select(inv, include, exclude, ctx)
  return r and ids_of(r) or nil, err
end

local names = {}
for i = 1, 12 do names[#names + 1] = "w" .. i end
for _, n in ipairs({ "gpu-01", "gpu-02", "gpu-03", "gpu-08", "gpu-12", "build-a", "build-b", "db" }) do
  names[#names + 1] = n
end
local inv = inventory(names, { ["gpu-01"] = { "gpu", "fast" }, ["gpu-12"] = { "gpu" }, db = { "fast" } })

-- Exact ids, globs, ranges with padding, tags; inventory order, no duplicates.
assert(sel(inv, "db,w3") == "w3 db")
assert(sel(inv, "build-*") == "build-a build-b")
assert(sel(inv, "w?") == "w1 w2 w3 w4 w5 w6 w7 w8 w9")
assert(sel(inv, "w[1-3,5,10-11]") == "w1 w2 w3 w5 w10 w11")
assert(sel(inv, "gpu-[01-03,12]") == "gpu-01 gpu-02 gpu-03 gpu-12")
assert(sel(inv, { "@gpu", "gpu-0[1-2]" }) == "gpu-01 gpu-02 gpu-12")
assert(sel(inv, "@fast,db") == "gpu-01 db")
assert(sel(inv, nil) == ids_of(inv))
-- Overlap and exclusion.
assert(sel(inv, "w[1-6],w[4-8]", "w[5-7],@gpu") == "w1 w2 w3 w4 w8")
assert(sel(inv, nil, "w*,gpu-*") == "build-a build-b db")
-- @failed through the context.
local ctx = { failed = function() return { w2 = true, db = true } end }
assert(sel(inv, "@failed", nil, ctx) == "w2 db")
assert(sel(inv, nil, "@failed", ctx):find("^w1 w3 "))

-- A pattern that matches nothing names itself and at most 5 nearest ids.
local r, err = sel(inv, "w1,w[40-41]")
assert(r == nil and err:find("^%-%-worker 'w%[40%-41%]' matches no worker; nearest: "), err)
local nearest = err:match("nearest: (.*)$")
assert(select(2, nearest:gsub(",", "")) == 4, "five nearest ids: " .. nearest)
r, err = sel(inv, nil, "dbx")
assert(r == nil and err:find("^%-%-exclude 'dbx' matches no worker; nearest: db"), err)
r, err = sel(inv, "@nosuchtag")
assert(r == nil and err:find("'@nosuchtag' matches no worker"), err)
r, err = sel(inv, "@failed", nil, { failed = function() return nil, "@failed: no deployment recorded" end })
assert(r == nil and err == "--worker @failed: no deployment recorded", err)
-- Malformed ranges are named.
for _, bad in ipairs({ "w[1-", "w1]", "w[a-b]", "w[5-2]" }) do
  r, err = sel(inv, bad)
  assert(r == nil and err:find("^%-%-worker "), bad .. ": " .. tostring(err))
end

-- Splitting keeps commas inside brackets.
local items = targets.split(" w[1-3,5] , build-*,,@gpu ")
assert(#items == 3 and items[1] == "w[1-3,5]" and items[2] == "build-*" and items[3] == "@gpu")

-- Folding is the inverse of expansion, with padding and mixed names.
assert(targets.fold({ "w1", "w2", "w3", "w5", "w9", "w10", "w11", "w12" }) == "w[1-3,5,9-12]")
assert(targets.fold({ "gpu-01", "gpu-02", "gpu-08", "db", "w7" }) == "gpu-[01-02,08],db,w7")
assert(targets.fold({ "r1n1", "r1n2", "r2n1" }) == "r1n[1-2],r2n1")
assert(targets.fold({}) == "")
for _, pattern in ipairs({ "w[1-3,5,9-12]", "gpu-[01-02,08]" }) do
  local expanded = assert(targets.expand(pattern))
  assert(targets.fold(expanded) == pattern, pattern .. " -> " .. targets.fold(expanded))
end

-- 5,000 workers: a range selects in well under a second.
local big = {}
for i = 1, 5000 do big[i] = { id = ("build-%04d"):format(i), tags = {} } end
local t0 = os.clock()
local picked = assert(targets.select(big, "build-[0001-2500]", "build-[0100-0199]"))
assert(#picked == 2400 and os.clock() - t0 < 1, #picked)
print("targets_test: ok")
