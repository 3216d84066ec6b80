--- Progress of a fleet operation for people: on a TTY a live block of the
-- workers in flight under the lines of finished ones; when piped, one plain
-- line per transition; with --json, nothing (the result is printed at the end).
local rch = require "rch"
local ui = require "rch.ui"

local M = {}
M.__index = M

--- @param mode "tty" | "plain" | "silent"
function M.new(mode, total)
  return setmetatable({ mode = mode, total = total, active = {}, order = {}, drawn = 0, last_draw = 0,
    done = 0, counts = {}, final = {} }, M)
end

--- The mode for this process: silent for --json, live on a TTY, plain otherwise.
function M.mode_for(json)
  if json then return "silent" end
  return ui.stdout_tty and "tty" or "plain"
end

local function elapsed(since) return ("%.1fs"):format(rch.monotonic() - since) end

function M:clear()
  if self.drawn > 0 then ui.control(("\27[%dF\27[J"):format(self.drawn)) end
  self.drawn = 0
end

function M:draw(force)
  if self.mode ~= "tty" then return end
  local now = rch.monotonic()
  if not force and now - self.last_draw < 0.1 then return end
  self.last_draw = now
  self:clear()
  local _, rows = rch.sys.term_size()
  local lines = {}
  for _, id in ipairs(self.order) do
    local a = self.active[id]
    if a then
      if #lines >= math.max(rows - 3, 3) then
        lines[#lines + 1] = ui.paint("dim", "  …")
        break
      end
      lines[#lines + 1] = ("  %s %-20s %-12s %s"):format(ui.paint("yellow", "•"), id, a.step, ui.paint("dim", elapsed(a.since)))
    end
  end
  local c = self.counts
  lines[#lines + 1] = ("  %d/%d done: %d completed, %d failed, %d skipped, %d rolled back"):format(self.done, self.total,
    c.Completed or 0, c.Failed or 0, c.Skipped or 0, c.RolledBack or 0)
  io.stdout:write(table.concat(lines, "\n"), "\n")
  io.stdout:flush()
  self.drawn = #lines
end

-- A permanent line: above the live block on a TTY, plain otherwise.
function M:line(text)
  if self.mode == "silent" then return end
  if self.mode == "tty" then self:clear() end
  io.stdout:write(text, "\n")
  io.stdout:flush()
  self:draw(true)
end

function M:note(text)
  self:line(ui.paint("bold", "==> ") .. text)
end

function M:started(ws)
  if self.active[ws.id] == nil then self.order[#self.order + 1] = ws.id end
  self.active[ws.id] = { step = "starting", since = rch.monotonic(), started = rch.monotonic() }
  self:draw(false)
end

function M:step(ws, name)
  local a = self.active[ws.id]
  if a then
    a.step, a.since = name, rch.monotonic()
  end
  if self.mode == "plain" then self:line(("%s: %s"):format(ws.id, name)) else self:draw(false) end
end

function M:finished(ws)
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
  self:line(text)
end

--- Removes the live block before the summary is printed.
function M:close()
  if self.mode == "tty" then self:clear() end
end

return M
