-- Strategy/hook lookup and require share one resolver: --script-dir (here
-- RCH_SCRIPT_DIR = tests/lua/fixtures), then the config dir, then built-in.
local scripts = require "rch.scripts"

local strategy = assert(scripts.load("strategies", "fixture_only"))
assert(strategy.name == "fixture_only", "fixture strategy loaded")

local missing, err = scripts.load("strategies", "no_such_strategy")
assert(missing == nil and err == "unknown strategy 'no_such_strategy'", tostring(err))

local bad, bad_err = scripts.load("hooks", "../escape")
assert(bad == nil and bad_err:find("invalid hooks name"), tostring(bad_err))

-- A failing user script names its file and line.
local ok, load_err = pcall(scripts.load, "hooks", "broken")
assert(not ok, "broken hook must raise")
assert(tostring(load_err):find("fixtures/hooks/broken%.lua:4: broken on purpose"), tostring(load_err))

-- Built-in engine modules resolve under their chunk name builtin/….
local info = debug.getinfo(require("rch.workers").select, "S")
assert(info.source == "@builtin/rch/workers.lua", info.source)

-- require of something that does not exist lists the search path.
local rok, rerr = pcall(require, "strategies.absent")
assert(not rok and rerr:find("no rch script 'strategies/absent.lua'"), rerr)
assert(rerr:find("builtin"), rerr)
