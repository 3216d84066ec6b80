-- rch.http in the real engine, without a server: escaping, misuse that
-- raises, requests refused before or at connect as nil, err (from several
-- tasks at once, so the pool's yield/resume path runs), and the [http],
-- [canary] interval and [policy] defaults of config.toml.
local rch = require "rch"

local function eq(actual, expected, what)
  if actual ~= expected then
    error(("%s: expected %s, got %s"):format(what, tostring(expected), tostring(actual)), 2)
  end
end

local function starts(s, prefix, what)
  if type(s) ~= "string" or s:sub(1, #prefix) ~= prefix then
    error(("%s: expected a message starting %q, got %s"):format(what, prefix, tostring(s)), 2)
  end
end

eq(rch.http.escape('up{job="a b"}/x~'), "up%7Bjob%3D%22a%20b%22%7D%2Fx~", "escape")

local ok, err = pcall(rch.http.get, "http://127.0.0.1:1/", { timout = 1 })
eq(ok, false, "unknown option raises")
starts(tostring(err):match("rch%.http%.get: .*"), "rch.http.get: unknown option 'timout'", "unknown option")
ok, err = pcall(rch.http.request, { method = "GET" })
eq(ok, false, "missing url raises")
starts(tostring(err):match("rch%.http%.request: .*"), "rch.http.request: url is required", "missing url")
eq(pcall(rch.http.get, "http://127.0.0.1:1/", { timeout = 0 }), false, "timeout 0 raises")

local r, e = rch.http.get("file:///etc/passwd")
eq(r, nil, "file:// result")
eq(e, "refusing file:///etc/passwd: only http:// and https:// URLs are allowed", "file:// error")
r, e = rch.http.request { url = "http://127.0.0.1:1/", headers = { ["X-A"] = "1\r\nX-B: 2" } }
eq(r, nil, "header injection result")
eq(e, "GET http://127.0.0.1:1/: header X-A contains a line break", "header injection error")

local results = rch.parallel({ 1, 2, 3 }, 3, function(i)
  local res, msg = rch.http.post_json("http://127.0.0.1:1/hook" .. i, { n = i }, { timeout = 5 })
  return res == nil and msg or "unexpected answer"
end)
for i = 1, 3 do starts(results[i], ("cannot connect to http://127.0.0.1:1/hook%d: "):format(i), "refused " .. i) end

local settings = assert(rch.config.settings())
eq(settings.http.timeout, 30, "[http] timeout default")
eq(settings.http.max_body_mb, 8, "[http] max_body_mb default")
eq(settings.canary.interval, 0, "[canary] interval default")
eq(next(settings.policy), nil, "[policy] is empty by default")
print("http_test: ok")
