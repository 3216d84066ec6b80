--- rch fleet audit verify FILE: checks the hash chain of an audit log and its
-- head (FILE.head), and names the first entry that was altered, removed or
-- reordered, a cut-off tail, or a torn last line.
local audit = require "rch.audit"
local ui = require "rch.ui"

local M = {}

function M.run(opts)
  local ok, result = audit.verify_file(opts.file)
  if not ok then
    ui.error(result)
    return 1
  end
  local head = result.head and ("head at entry %d matches"):format(result.head.seq)
    or "no head file (written by an older rch)"
  io.stdout:write(("%s: %d entries, hash chain intact, %s\n"):format(opts.file, result.entries, head))
  if result.beyond_head > 0 then
    ui.error(("warning: %d entries after the head: a writer stopped before updating %s.head (the next write"
      .. " updates it)"):format(result.beyond_head, opts.file))
  end
  return 0
end

return M
