-- rch.json round trips through nlohmann::json.
local rch = require "rch"

local decoded = assert(rch.json.decode('{"a":[1,2,{"b":null}],"e":[],"s":"x\\ny","f":1.5,"t":true}'))
assert(decoded.a[1] == 1 and decoded.a[3].b == nil, "nested values")
assert(decoded.s == "x\ny" and decoded.f == 1.5 and decoded.t == true, "scalars")
local again = rch.json.encode(decoded)
assert(again:find('"e":%[%]'), "empty array must stay an array: " .. again)
assert(rch.json.encode({}) == "{}", "empty table is an object")
assert(rch.json.encode(rch.json.array()) == "[]", "marked empty array")
assert(rch.json.encode({ 1, 2, 3 }) == "[1,2,3]", "list")
local value, err = rch.json.decode("{not json")
assert(value == nil and err:find("invalid JSON"), "bad input is nil, err")
local ok, msg = pcall(rch.json.encode, { f = function() end })
assert(not ok and msg:find("cannot encode a function"), "functions are refused: " .. tostring(msg))
assert(rch.json.encode({ v = rch.json.null }) == '{"v":null}', "rch.json.null encodes as null")

-- decode reads plain ASCII documents on a fast path and everything else with
-- nlohmann's parser: both must give the same values and refuse the same texts.
local function same(text, want)
  local got = rch.json.encode(assert(rch.json.decode(text), text))
  assert(got == want, ("%s decodes to %s, not %s"):format(text, got, want))
end
assert(rch.json.decode('{"a":"x\\"\\\\\\/\\b\\f\\n\\r\\t"}').a == "x\"\\/\b\f\n\r\t", "escapes")
same(' [ 1 , -2.5e3 , 0.125E-1 , true , false ] ', "[1,-2500,0.0125,true,false]")
assert(rch.json.decode("[1e400]") == nil, "out of double range: refused, as nlohmann does")
same('{"u":"caf\\u00e9","v":"caf\xc3\xa9"}', '{"u":"caf\xc3\xa9","v":"caf\xc3\xa9"}')
same('{"b":{"$b64":"/w=="}}', '{"b":{"$b64":"/w=="}}')
same('[12345678901234567890, 9007199254740993]', "[12345678901234567168,9007199254740992]")
assert(1 / assert(rch.json.decode("-0")) == math.huge, "an integer -0 is 0, as nlohmann reads it")
assert(1 / assert(rch.json.decode("-0.0")) == -math.huge, "-0.0 keeps its sign")
local deep = ("["):rep(300) .. ("]"):rep(300)
assert(type(rch.json.decode(deep)) == "table", "deep nesting")
for _, bad in ipairs({ "01", "1.", "-", ".5", "+1", '"a', '{"a" 1}', "[1,]", '{"a":1,}', "[1] x", "tru", '"\1"',
  '"\\x"', "", "NaN", '{"a":1}}' }) do
  assert(rch.json.decode(bad) == nil, "accepted invalid JSON: " .. bad)
end
