--- rch fleet exec: one command on every targeted worker, in the login home
-- (as ssh runs it), at most --parallel at once, one SSH session each.
-- Output folded like `clush -b` (workers with identical stdout, stderr and
-- exit code share one block), streamed as `id: line` with --no-fold, or one
-- JSON document. Worker output is data: capped ([defaults] max_output_bytes)
-- and sanitised before it is shown. Audited as AdhocExec.
local rch = require "rch"
local ui = require "rch.ui"
local adhoc = require "rch.adhoc"
local targets = require "rch.targets"
local steps = require "rch.deploy.remote_steps"

local M = {}

-- The remote command: argv quoted word by word, or --shell's line as
-- written; --as-build wraps it in `rch-wkr exec --` (a lease; refused while draining).
local function remote_command(opts, conn)
  local argv = opts.shell and { "sh", "-c", opts.shell } or opts.argv
  if not opts.as_build then return opts.shell or argv end
  local root, err = conn:root()
  if not root then return nil, err end
  local wrapped = steps.agent_argv(root, "exec", "--")
  for _, word in ipairs(argv) do wrapped[#wrapped + 1] = word end
  return wrapped
end

-- Lines of one worker's stream as they arrive: "id: line", sanitised.
local function line_printer(id, file)
  local partial = ""
  return function(bytes, final)
    local text = partial .. bytes
    local last = 1
    for line, next_pos in text:gmatch("([^\n]*)\n()") do
      file:write(id, ": ", rch.log.sanitize(line), "\n")
      last = next_pos
    end
    partial = text:sub(last)
    if final and partial ~= "" then
      file:write(id, ": ", rch.log.sanitize(partial), "\n")
      partial = ""
    end
  end
end

-- Runs the command with exec_stream, printing lines as they come.
local function run_streamed(conn, id, command, timeout)
  local out, err = line_printer(id, io.stdout), line_printer(id, io.stderr)
  local stream, serr = conn:exec_stream(command, { timeout = timeout })
  if not stream then return nil, serr end
  while true do
    local kind, data = stream:read()
    if kind == nil then return nil, data end
    if kind == "done" then
      out("", true)
      err("", true)
      return data
    end
    if kind == "out" then out(data) else err(data) end
    io.stdout:flush()
  end
end

local function run_one(opts, conn, worker, timeout)
  local command, err = remote_command(opts, conn)
  if not command then return { error = err } end
  local started = rch.monotonic()
  local r
  if opts.no_fold then
    r, err = run_streamed(conn, worker.id, command, timeout)
  else
    r, err = conn:exec(command, { timeout = timeout })
  end
  if not r then return { error = err } end
  local res = { exit_code = not r.timed_out and r.code or nil, stdout = r.out, stderr = r.err,
    duration = rch.monotonic() - started, timed_out = r.timed_out, truncated = r.out_truncated or r.err_truncated,
    cut = steps.truncation(r) }
  if opts.as_build and r.code == 75 and not r.timed_out then
    res.refused = "refused: the worker is draining (rch-wkr exec exit 75)"
  end
  return res
end

-- clush -b: one block per distinct (exit code, stdout, stderr), in worker order.
local function print_folded(results, timeout)
  local groups, order = {}, {}
  for _, r in ipairs(results) do
    if not r.error then
      local status = r.timed_out and ("timed out after " .. timeout .. " s")
        or r.refused or ("exit " .. tostring(r.exit_code))
      local key = table.concat({ status, #r.stdout, r.stdout, r.stderr, r.cut }, "\0")
      if not groups[key] then
        groups[key] = { status = status, r = r, ids = {} }
        order[#order + 1] = key
      end
      table.insert(groups[key].ids, r.worker_id)
    end
  end
  for _, key in ipairs(order) do
    local g = groups[key]
    io.stdout:write("---------------\n", targets.fold(g.ids), " (", g.status, ")", g.r.cut, "\n---------------\n")
    for _, text in ipairs({ g.r.stdout, g.r.stderr }) do
      if text ~= "" then
        io.stdout:write(rch.log.sanitize(text, { multiline = true }))
        if text:sub(-1) ~= "\n" then io.stdout:write("\n") end
      end
    end
  end
end

local function print_json(results)
  local null = rch.json.null
  local list = rch.json.array()
  for i, r in ipairs(results) do
    list[i] = { worker_id = r.worker_id, exit_code = r.exit_code or null, stdout = r.stdout or null,
      stderr = r.stderr or null, duration_secs = r.duration or null, truncated = r.truncated or false,
      timed_out = r.timed_out or false, error = r.error or r.refused or null }
  end
  io.stdout:write(ui.json({ workers = list }), "\n")
end

-- The workers of each outcome, the errors, and each worker's exit code (or why none) for the audit.
local function classify(results)
  local g = { ok = {}, failed = {}, timed_out = {}, refused = {}, unreachable = {}, broken = {}, errors = {},
    codes = {}, all = {} }
  for _, r in ipairs(results) do
    g.all[#g.all + 1] = r.worker_id
    g.codes[r.worker_id] = r.exit_code or (r.timed_out and "timed out") or (r.unreachable and "unreachable")
      or (r.error and "error") or -1
    local group = r.error and (r.unreachable and g.unreachable or g.broken) or (r.timed_out and g.timed_out)
      or (r.refused and g.refused) or (r.exit_code == 0 and g.ok) or g.failed
    group[#group + 1] = r.worker_id
    if r.error then g.errors[#g.errors + 1] = r end
  end
  return g
end

local function print_summary(results, g, opts, words, elapsed)
  local bad = #results - #g.ok
  io.stdout:write(("exec: %d worker%s, %d exit 0, %d failed, %d unreachable in %.1fs\n"):format(#results,
    #results == 1 and "" or "s", #g.ok, bad - #g.unreachable, #g.unreachable, elapsed))
  adhoc.print_failures({
    { label = "exit != 0", ids = g.failed }, { label = "timed out", ids = g.timed_out },
    { label = "refused", ids = g.refused }, { label = "error", ids = g.broken }, { label = "unreachable", ids = g.unreachable },
  }, g.errors, function(folded)
    local flags = { "rch", "fleet", "exec", "--worker", folded }
    if opts.as_build then flags[#flags + 1] = "--as-build" end
    if opts.timeout then flags[#flags + 1] = "--timeout"; flags[#flags + 1] = tostring(opts.timeout) end
    for _, w in ipairs(words) do flags[#flags + 1] = w end
    return adhoc.shell_words(flags)
  end)
end

--- @param opts {worker, exclude, parallel, timeout, json, no_fold, as_build, argv = list, shell = string}
-- @return exit code
function M.run(opts)
  if opts.shell == "" then opts.shell = nil end
  if (opts.shell ~= nil) == (#(opts.argv or {}) > 0) then
    ui.error("fleet exec needs a command: `-- CMD [ARGS…]` (run as an argument list) or `--shell 'LINE'`, not both")
    return 2
  end
  if opts.json and opts.no_fold then
    ui.error("--json and --no-fold cannot be combined")
    return 2
  end
  local ctx, err, code = adhoc.start(opts)
  if not ctx then
    ui.error(err)
    return code
  end
  local timeout = opts.timeout or ctx.settings.defaults.command_timeout
  local words = opts.shell and { "--shell", opts.shell } or { "--" }
  for _, w in ipairs(opts.shell and {} or opts.argv) do words[#words + 1] = w end
  local started = rch.monotonic()
  local results = adhoc.each(ctx, function(w, conn) return run_one(opts, conn, w, timeout) end)
  local elapsed = rch.monotonic() - started

  local g = classify(results)
  ctx.audit:log("AdhocExec", nil, { command = rch.json.array(words), as_build = opts.as_build or false,
    workers = targets.fold(g.all), exit_codes = g.codes, duration_secs = elapsed })
  ctx.audit:barrier()
  if opts.json then
    print_json(results)
  else
    if not opts.no_fold then print_folded(results, timeout) end
    print_summary(results, g, opts, words, elapsed)
  end
  return #g.ok == #results and 0 or 1
end

return M
