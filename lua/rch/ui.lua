--- Terminal output helpers: colour only on a TTY and without NO_COLOR.
-- Everything written to stdout/stderr passes the output sanitiser (the
-- terminal sink in bind_log.cpp): control characters from workers or config
-- files are shown escaped ("\x1b"), invalid UTF-8 as U+FFFD.
local log = require "rch.log"

local M = {}

M.stdout_tty = require("rch.sys").isatty(1)
-- no-color.org: NO_COLOR set to a non-empty value turns colour off.
M.color = M.stdout_tty and (os.getenv("NO_COLOR") or "") == ""

local codes = { red = "31", green = "32", yellow = "33", dim = "2", bold = "1" }

--- Wraps text in an ANSI colour when colour is on.
function M.paint(name, text)
  if not M.color then return text end
  return "\27[" .. codes[name] .. "m" .. text .. "\27[0m"
end

--- One line of text for a single-line slot (a table cell, a status line):
-- newlines and every other control shown escaped, colour kept.
function M.one_line(text)
  return log.sanitize(tostring(text), { keep_sgr = M.color })
end

--- Writes terminal control sequences (cursor movement, erase) unfiltered:
-- only for rch's own redraws, never with data in them.
M.control = log.control

--- Prints rows as aligned columns; widths ignore colour codes.
-- @param header list of column titles
-- @param rows list of lists of strings (may be painted)
function M.table(header, rows)
  local widths = {}
  local function visible(s) return (s:gsub("\27%[[%d;]*m", "")) end
  local clean = {}
  for r, row in ipairs(rows) do
    clean[r] = {}
    for i, cell in ipairs(row) do clean[r][i] = M.one_line(cell) end
  end
  rows = clean
  for i, h in ipairs(header) do widths[i] = #h end
  for _, row in ipairs(rows) do
    for i, cell in ipairs(row) do widths[i] = math.max(widths[i] or 0, #visible(cell)) end
  end
  local function line(cells)
    local out = {}
    for i, cell in ipairs(cells) do
      local pad = i < #cells and (" "):rep(widths[i] - #visible(cell) + 2) or ""
      out[#out + 1] = cell .. pad
    end
    io.stdout:write(table.concat(out), "\n")
  end
  line(header)
  for _, row in ipairs(rows) do line(row) end
end

--- The closing lines of a command that touches workers: the workers of each
-- outcome, folded (w[1-3,7]), then, when some did not succeed, the command
-- that retries them. These are all that --quiet prints.
-- @param groups list of {label, ids} in display order; empty ones are left out
-- @param retry nil, or {what = "the workers that failed", command = "rch fleet …"}
-- @return the lines, each ending in "\n"
function M.outcomes(groups, retry)
  local fold = require("rch.targets").fold
  local lines = {}
  for _, g in ipairs(groups) do
    if #g.ids > 0 then lines[#lines + 1] = ("  %-11s %s\n"):format(g.label, fold(g.ids)) end
  end
  if retry then lines[#lines + 1] = ("Retry %s: %s\n"):format(retry.what, retry.command) end
  return table.concat(lines)
end

--- "--worker 'w[2-3]'": the ids, folded and quoted for a shell.
function M.worker_flag(ids)
  return "--worker '" .. require("rch.targets").fold(ids) .. "'"
end

--- The version of every --json document's shape (docs/json.md); raised when a
-- field changes meaning or disappears, not when one is added.
M.SCHEMA_VERSION = 1

-- Per command run (run_command): --json given, a document built, the first error said.
local json_mode, document_built, first_error = false, false, nil

--- --quiet (a global flag) for this command: only the closing summary on
-- stdout (M.outcomes), no per-worker progress; nothing changes under --json.
M.quiet = false

--- A --json document for stdout: valid UTF-8 always (a byte string that is
-- not UTF-8 shows its bad bytes as U+FFFD; the durable records keep them
-- exactly as {"$b64": …}, see rch.json). Objects get "schema_version".
-- @param compact one line instead of pretty-printed
function M.json(value, compact)
  if type(value) == "table" and getmetatable(value) == nil and value[1] == nil and value.schema_version == nil then
    value.schema_version = M.SCHEMA_VERSION
  end
  document_built = true
  return require("rch.json").encode(value, { pretty = not compact, invalid_utf8 = "replace" })
end

--- Writes "rch: message" to stderr.
function M.error(message)
  first_error = first_error or message
  io.stderr:write("rch: ", message, "\n")
  if log.to_file() then log.error(message) end
end

--- A log record of something this command's own output already shows
-- (`shown`: a worker's failure on the progress lines): it goes to a
-- --log-file, and to stderr when the level was raised to info or beyond
-- (-v); at the default level the console says it once.
function M.log_shown(level, text, shown)
  if not shown or log.to_file() or log.enabled("info") then log[level](text) end
end

--- Runs a command module's run(opts) (the engine's entry point for every rch
-- command). Under --json, stdout always carries one JSON document: a command
-- that fails before printing its own (a configuration error, a refusal, a
-- Lua error) prints {"ok": false, "error", "exit_code", "schema_version"}.
function M.run_command(module, opts)
  json_mode, document_built, first_error = type(opts) == "table" and opts.json == true, false, nil
  M.quiet = type(opts) == "table" and opts.quiet == true and not json_mode
  local ok, code = require("rch").pcall(function() return require(module).run(opts) end)
  local failed = not ok or (type(code) == "number" and code ~= 0)
  if json_mode and failed and not document_built then
    local message = not ok and tostring(code) or first_error or ("exit " .. tostring(code))
    io.stdout:write(M.json({ ok = false, error = (message:gsub("\n.*", "")), exit_code = ok and code or 1 }), "\n")
  end
  if not ok then error(code, 0) end
  return code
end

--- What rch is about to do, on stderr (so --json stdout stays one document).
M.info = M.error

return M
