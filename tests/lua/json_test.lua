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
