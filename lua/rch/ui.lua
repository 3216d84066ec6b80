--- Terminal output helpers: colour only on a TTY and without NO_COLOR.
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

--- Prints rows as aligned columns; widths ignore colour codes.
-- @param header list of column titles
-- @param rows list of lists of strings (may be painted)
function M.table(header, rows)
  local widths = {}
  local function visible(s) return (s:gsub("\27%[[%d;]*m", "")) end
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

--- Writes "rch: message" to stderr.
function M.error(message)
  io.stderr:write("rch: ", message, "\n")
end

--- What rch is about to do, on stderr (so --json stdout stays one document).
M.info = M.error

return M
