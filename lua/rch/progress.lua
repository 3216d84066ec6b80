--- Progress of a fleet operation for people: on a TTY a live block of the
-- workers in flight (step; during transfer bytes sent, MB/s, ETA) and an
-- overall line under the lines of finished ones; when piped, one plain line
-- per transition; with --quiet, failures on stderr and nothing else (the
-- command prints its closing summary); with --json, nothing (the result is
-- printed at the end).
local rch = require "rch"
local ui = require "rch.ui"

local M = {}
M.__index = M

-- The live block on screen, if any. A log line (stderr: the same terminal)
-- written under it would scroll it, and the next redraw would then erase the
-- wrong rows: every log call clears the block first (the next tick redraws it).
local on_screen
local function clear_before_logging()
  local log = require "rch.log"
  if log.clears_live_view then return end
  log.clears_live_view = true
  for _, level in ipairs({ "trace", "debug", "info", "warn", "error" }) do
    local write = log[level]
    log[level] = function(...)
      if on_screen and log.enabled(level) and not log.to_file() then
        on_screen:clear()
        io.stdout:flush() -- the log writes to stderr unbuffered: the erase must be out first
      end
      return write(...)
    end
  end
end

--- @param mode "tty" | "plain" | "quiet" | "silent"
function M.new(mode, total)
  return setmetatable({ mode = mode, total = total, active = {}, order = {}, drawn = 0, last_draw = 0,
    done = 0, counts = {}, final = {}, began = rch.monotonic(), id_width = 8 }, M)
end

--- The mode for this process: silent for --json, quiet for --quiet, live on a TTY, plain otherwise.
function M.mode_for(json)
  if json then return "silent" end
  if ui.quiet then return "quiet" end
  return ui.stdout_tty and "tty" or "plain"
end

--- "7s", "2m05s", "1h02m".
local function duration(secs)
  secs = math.max(0, math.floor(secs + 0.5))
  if secs < 60 then return secs .. "s" end
  if secs < 3600 then return ("%dm%02ds"):format(math.floor(secs / 60), secs % 60) end
  return ("%dh%02dm"):format(math.floor(secs / 3600), math.floor(secs % 3600 / 60))
end

local function elapsed(since) return ("%.1fs"):format(rch.monotonic() - since) end

-- What a worker in flight is doing, after its id and step; during a transfer
-- also the seconds it has left (nil when unknown).
local function detail(a, now)
  if not a.counter then return elapsed(a.since) end
  local sent, total = a.counter:get()
  local secs = now - a.since
  local rate = secs > 0 and sent / secs or 0
  local left = (rate > 0 and total >= sent) and (total - sent) / rate or nil
  return ("%.1f/%.1f MB  %.1f MB/s  ETA %s"):format(sent / 1e6, total / 1e6, rate / 1e6,
    left and duration(left) or "-"), left
end

function M:clear()
  if self.drawn > 0 then ui.control(("\27[%dF\27[J"):format(self.drawn)) end
  self.drawn = 0
  if on_screen == self then on_screen = nil end
end

function M:draw(force)
  if self.mode ~= "tty" then return end
  local now = rch.monotonic()
  if not force and now - self.last_draw < 0.1 then return end
  self.last_draw = now
  self:clear()
  -- Every line fits the terminal: a wrapped line would leave a stale row behind the next redraw.
  local cols, rows = rch.sys.term_size()
  local function fit(text, room) return #text > room and text:sub(1, math.max(room - 1, 0)) .. "…" or text end
  local lines, longest = {}, nil
  for _, id in ipairs(self.order) do
    local a = self.active[id]
    if a then
      local text, left = detail(a, now)
      if left then longest = math.max(longest or 0, left) end
      if #lines < math.max(rows - 3, 3) then
        lines[#lines + 1] = "  " .. ui.paint("yellow", "•") .. " "
          .. fit(("%-" .. self.id_width .. "s %-10s %s"):format(id, a.step, text), cols - 5)
      elseif #lines == math.max(rows - 3, 3) then
        lines[#lines + 1] = ui.paint("dim", "  …")
      end
    end
  end
  -- The fleet's ETA: the pace of the workers done so far, and no sooner than the slowest transfer.
  local c = self.counts
  local left = self.total - self.done
  local pace = self.done > 0 and (now - self.began) / self.done * left or nil
  if longest then pace = math.max(pace or 0, longest) end
  local eta = left == 0 and "0s" or (pace and duration(pace) or "-")
  lines[#lines + 1] = "  " .. fit(("%d/%d done: %d completed, %d failed, %d skipped, %d rolled back; elapsed %s, ETA %s")
    :format(self.done, self.total, c.Completed or 0, c.Failed or 0, c.Skipped or 0, c.RolledBack or 0,
      duration(now - self.began), eta), cols - 3)
  io.stdout:write(table.concat(lines, "\n"), "\n")
  io.stdout:flush()
  self.drawn = #lines
  clear_before_logging()
  on_screen = self
end

-- Redraws while workers are in flight, so that bytes, rates and times move
-- between transitions; ends by itself when none is left.
function M:tick()
  if self.mode ~= "tty" or self.ticker then return end
  self.ticker = rch.spawn(function()
    while not self.closed and next(self.active) do
      self:draw(true)
      rch.sleep(0.1)
    end
    self.ticker = nil
  end)
end

-- A permanent line: above the live block on a TTY, plain otherwise.
function M:line(text)
  if self.mode == "silent" or self.mode == "quiet" then return end
  if self.mode == "tty" then self:clear() end
  io.stdout:write(text, "\n")
  io.stdout:flush()
  self:draw(true)
end

function M:note(text)
  self:line(ui.paint("bold", "==> ") .. text)
end

-- Silent (--json, stress): nothing is shown, so nothing is tracked either.
function M:started(ws)
  if self.mode == "silent" then return end
  if self.active[ws.id] == nil then self.order[#self.order + 1] = ws.id end
  self.id_width = math.min(math.max(self.id_width, #ws.id), 24)
  self.active[ws.id] = { step = "starting", since = rch.monotonic(), started = rch.monotonic() }
  self:draw(false)
  self:tick()
end

function M:step(ws, name)
  if self.mode == "silent" then return end
  local a = self.active[ws.id]
  if a then
    a.step, a.since, a.counter = name, rch.monotonic(), nil
  end
  if self.mode == "plain" then self:line(("%s: %s"):format(ws.id, name)) else self:draw(false) end
end

--- A counter for the upload of a worker's transfer step (rch.ssh.progress()),
-- or nil when nothing shows it (the live view only).
function M:transfer(ws)
  local a = self.active[ws.id]
  if self.mode ~= "tty" or not a then return nil end
  a.counter = rch.ssh.progress()
  return a.counter
end

function M:finished(ws)
  if self.mode == "silent" then return end
  local a = self.active[ws.id]
  self.active[ws.id] = nil
  -- A canary rolled back after completing finishes twice: count it once.
  local before = self.final[ws.id]
  if before then self.counts[before] = self.counts[before] - 1 else self.done = self.done + 1 end
  self.final[ws.id] = ws.status
  self.counts[ws.status] = (self.counts[ws.status] or 0) + 1
  local took = a and (" in " .. elapsed(a.started)) or ""
  local text
  -- Reasons quote workers and hooks: one line each, controls shown escaped.
  if ws.status == "Completed" then
    text = ui.paint("green", "✓ ") .. ws.id .. " completed" .. took
  elseif ws.status == "Skipped" then
    text = ui.paint("dim", "- " .. ws.id .. " skipped: " .. ui.one_line(ws.skip_reason))
  elseif ws.status == "RolledBack" then
    text = ui.paint("yellow", "↺ ") .. ws.id .. " rolled back: " .. ui.one_line(ws.error)
  else
    text = ui.paint("red", "✗ ") .. ws.id .. " failed: " .. ui.one_line(ws.error)
  end
  -- --quiet: what went wrong is an error, on stderr; the rest is in the summary.
  if self.mode == "quiet" and (ws.status == "Failed" or ws.status == "RolledBack") then
    io.stderr:write("rch: ", ws.id, ws.status == "Failed" and " failed: " or " rolled back: ", ui.one_line(ws.error),
      "\n")
  end
  self:line(text)
end

--- Removes the live block before the summary is printed.
function M:close()
  self.closed = true
  if self.mode == "tty" then self:clear() end
end

return M
