-- rch.json round trips, property style: random nested values (strings of
-- random bytes, integers, doubles, booleans, arrays incl. empty ones, objects)
-- encode -> decode -> the same value, and the text is always valid UTF-8.
-- Then the errors that replace silent data loss, and the {"$b64"} form.
local rch = require "rch"
local json = rch.json

local seed = tonumber(os.getenv("RCH_TEST_SEED")) or 20261201
math.randomseed(seed)

-- Strict UTF-8 (RFC 3629), written out here so the test does not trust rch.
local function valid_utf8(s)
  local i, n = 1, #s
  while i <= n do
    local c = s:byte(i)
    local len
    local lo, hi = 0x80, 0xBF
    if c < 0x80 then len = 1
    elseif c >= 0xC2 and c <= 0xDF then len = 2
    elseif c >= 0xE0 and c <= 0xEF then
      len = 3
      if c == 0xE0 then lo = 0xA0 elseif c == 0xED then hi = 0x9F end
    elseif c >= 0xF0 and c <= 0xF4 then
      len = 4
      if c == 0xF0 then lo = 0x90 elseif c == 0xF4 then hi = 0x8F end
    else return false end
    for k = 1, len - 1 do
      local b = s:byte(i + k)
      if not b then return false end
      if k == 1 then
        if b < lo or b > hi then return false end
      elseif b < 0x80 or b > 0xBF then return false end
    end
    i = i + len
  end
  return true
end

local PIECES = { "a", "Z", " ", '"', "\\", "/", "\n", "\t", "\r", "\0", "\27", "\127", "\194\155", "é", "✓", "😀",
  "\233", "\255", "\192\175", "\237\160\128", "$b64", "\226\156" }
local function random_string(max)
  local parts = {}
  for i = 1, math.random(0, max) do
    if math.random() < 0.4 then
      parts[i] = string.char(math.random(0, 255))
    else
      parts[i] = PIECES[math.random(#PIECES)]
    end
  end
  return table.concat(parts)
end

local function random_key()
  -- Keys are UTF-8 (a byte-string key is an error, tested below).
  local parts = {}
  for i = 1, math.random(0, 8) do
    parts[i] = ({ "k", "é", "_", "1", " ", "\n", "✓", "$b64", "\"" })[math.random(9)]
  end
  return table.concat(parts)
end

local function random_number()
  local kind = math.random(5)
  if kind == 1 then return math.random(-1000, 1000) end
  if kind == 2 then return math.floor((math.random() - 0.5) * 2 ^ 60) end -- also beyond 2^53
  if kind == 3 then return ({ 0.1, 0.2, 1 / 3, 1e300, -1e-300, 5e-324, 2 ^ 53, 2 ^ 53 + 2, 123456.789 })[math.random(9)] end
  return (math.random() - 0.5) * 10 ^ math.random(-30, 30)
end

local function random_value(depth)
  local kind = math.random(depth > 3 and 4 or 7)
  if kind == 1 then return random_string(12) end
  if kind == 2 then return random_number() end
  if kind == 3 then return math.random() < 0.5 end
  if kind == 4 then return random_string(3) end
  if kind == 5 or kind == 6 then
    local t = json.array()
    for i = 1, math.random(0, 4) do t[i] = random_value(depth + 1) end
    return t
  end
  local t = {}
  for _ = 1, math.random(0, 4) do t[random_key()] = random_value(depth + 1) end
  if next(t) ~= nil and next(t) == "$b64" and next(t, "$b64") == nil then t.other = 1 end
  return t
end

local function same(a, b, path)
  if type(a) ~= type(b) then return false, path .. ": " .. type(a) .. " became " .. type(b) end
  if type(a) ~= "table" then
    if a ~= b then return false, ("%s: %q became %q"):format(path, tostring(a), tostring(b)) end
    return true
  end
  for k, v in pairs(a) do
    local ok, why = same(v, b[k], path .. "." .. tostring(k))
    if not ok then return false, why end
  end
  for k in pairs(b) do
    if a[k] == nil then return false, path .. ": extra key " .. tostring(k) end
  end
  return true
end

for round = 1, 3000 do
  local value = random_value(0)
  for _, pretty in ipairs({ false, true }) do
    local text = json.encode(value, { pretty = pretty })
    assert(valid_utf8(text), ("seed %d round %d: encoder output is not UTF-8: %q"):format(seed, round, text))
    local back, err = json.decode(text)
    assert(back ~= nil, ("seed %d round %d: %s for %q"):format(seed, round, tostring(err), text))
    local ok, why = same(value, back, "value")
    assert(ok, ("seed %d round %d: %s\n%s"):format(seed, round, why, text))
    assert(json.encode(back, { pretty = pretty }) == text, "re-encoding the decoded value changes the text")
  end
  -- For people: valid UTF-8, bad bytes as U+FFFD, never a {"$b64"} object.
  local text = json.encode(value, { invalid_utf8 = "replace" })
  assert(valid_utf8(text) and json.decode(text) ~= nil, "replace mode: " .. text)
  assert(not text:find('"$b64"', 1, true) or json.encode(value):find('"$b64"', 1, true), "replace mode wrote $b64")
  -- No raw control byte (C0, DEL, C1) survives in the text: it is safe to print.
  assert(not text:find("[%z\1-\31\127]") and not text:find("\194[\128-\159]"), "raw control in " .. text)
end

-- Exact forms.
assert(json.encode(0.1) == "0.1", json.encode(0.1))
assert(json.encode({ 1.5, 1e300, -2, 2 ^ 53 + 2 }) == "[1.5,1e+300,-2,9007199254740994]"
  or json.encode({ 1.5, 1e300, -2, 2 ^ 53 + 2 }) == "[1.5,1e+300,-2,9.007199254740994e+15]",
  json.encode({ 1.5, 1e300, -2, 2 ^ 53 + 2 }))
assert(json.encode("\233chec") == '{"$b64":"6WNoZWM="}', json.encode("\233chec"))
assert(json.decode('{"$b64":"6WNoZWM="}') == "\233chec", "decoding $b64 gives back the bytes")
assert(json.encode("\233chec", { invalid_utf8 = "replace" }) == '"\239\191\189chec"', "U+FFFD for people")
assert(json.encode("\27]0;x\7\194\155") == '"\\u001b]0;x\\u0007\\u009b"', json.encode("\27]0;x\7\194\155"))
assert(json.encode({ reason = "\233" }) == '{"reason":{"$b64":"6Q=="}}', json.encode({ reason = "\233" }))

-- A record written before {"$b64"} existed (raw bytes) still reads, bad bytes as U+FFFD.
local legacy = assert(json.decode('{"worker":"w1","error":"\233chec"}'))
assert(legacy.worker == "w1" and legacy.error == "\239\191\189chec", legacy.error)
local bad, bad_err = json.decode('{"$b64":"not base64!"}')
assert(bad == nil and bad_err:find("base64"), tostring(bad_err))

-- Tables that would lose data are errors naming their path.
local function fails(value, pattern)
  local ok, err = pcall(json.encode, value)
  assert(not ok, "expected an error matching " .. pattern)
  assert(err:find(pattern, 1, true), ("%q does not contain %q"):format(err, pattern))
  ok, err = pcall(json.encode, value, { invalid_utf8 = "replace" })
  assert(not ok and err:find(pattern, 1, true), "replace mode too: " .. tostring(err))
end
fails({ [1] = 1, [2] = 2, [5] = 5 }, "rch.json: sparse array at the top level")
fails({ workers = { {}, {}, { steps = { [1] = "a", [3] = "c" } } } }, "rch.json: sparse array at workers[3].steps")
fails({ 1, 2, name = "x" }, "rch.json: table mixes array items and string keys at the top level")
fails({ a = { [0] = "zero" } }, "rch.json: table key 0 is not an array index at a")
fails({ a = { [1.5] = "x" } }, "rch.json: table key 1.5 is not an array index at a")
fails({ x = { ["$b64"] = "Zm9v" } }, 'only key is "$b64"')
fails({ n = 0 / 0 }, "rch.json: cannot encode a non-finite number at n")
fails({ f = print }, "rch.json: cannot encode a function at f")
local ok_key, key_err = pcall(json.encode, { ["\233"] = 1 })
assert(not ok_key and key_err:find("not valid UTF-8", 1, true), tostring(key_err))
assert(json.encode({ ["\233"] = 1 }, { invalid_utf8 = "replace" }) == '{"\239\191\189":1}', "replace mode key")
local ok_opt, opt_err = pcall(json.encode, 1, { invalid_utf8 = "drop" })
assert(not ok_opt and opt_err:find("invalid_utf8"), tostring(opt_err))
