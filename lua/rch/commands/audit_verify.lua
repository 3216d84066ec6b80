--- rch fleet audit verify FILE: checks the hash chain of an audit log and
-- names the first entry that was altered, removed or reordered.
local audit = require "rch.audit"
local ui = require "rch.ui"

local M = {}

function M.run(opts)
  local ok, result = audit.verify_file(opts.file)
  if not ok then
    ui.error(result)
    return 1
  end
  io.stdout:write(("%s: %d entries, hash chain intact\n"):format(opts.file, result))
  return 0
end

return M
