--- rch fleet audit verify FILE: checks the hash chain of an audit log (with
-- its rotated files FILE.N … FILE.1) and its head (FILE.head), and names the first entry that was altered, removed or
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
  local span = ""
  if result.files > 1 or result.first_seq > 1 then
    span = (" (seq %d-%d in %d file%s%s)"):format(result.first_seq, result.first_seq + result.entries - 1,
      result.files, result.files == 1 and "" or "s", result.first_seq > 1 and "; older files were pruned" or "")
  end
  io.stdout:write(("%s: %d entries%s, hash chain intact, %s\n"):format(opts.file, result.entries, span, head))
  if result.beyond_head > 0 then
    ui.error(("warning: %d entries after the head: a writer stopped before updating %s.head (the next write"
      .. " updates it)"):format(result.beyond_head, opts.file))
  end
  return 0
end

return M
