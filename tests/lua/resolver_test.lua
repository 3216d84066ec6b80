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
local broken, load_err = scripts.load("hooks", "broken")
assert(broken == nil, "broken hook must not load")
assert(tostring(load_err):find("fixtures/hooks/broken%.lua:4: broken on purpose"), tostring(load_err))

-- A strategy that breaks its contract is refused on load, naming the file.
local no_run, contract_err = scripts.load("strategies", "no_run")
assert(no_run == nil and contract_err:find("fixtures/strategies/no_run%.lua: strategy 'no_run' has no run%(d%)"),
  tostring(contract_err))

-- One error policy: a hook that raises is a `false, message` naming file:line, never an exception.
local hooks = require "rch.hooks"
local called, message = hooks.call("on_failure", nil)
assert(called == false and message:find("^hook on_failure %(builtin%) raised: "), tostring(message))

-- Built-in engine modules resolve under their chunk name builtin/….
local info = debug.getinfo(require("rch.workers").select, "S")
assert(info.source == "@builtin/rch/workers.lua", info.source)

-- require of something that does not exist lists the search path.
local rok, rerr = pcall(require, "strategies.absent")
assert(not rok and rerr:find("no rch script 'strategies/absent.lua'"), rerr)
assert(rerr:find("builtin"), rerr)
