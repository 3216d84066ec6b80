--- rch fleet copy SRC DEST: one local file to every targeted worker through
-- deploy's upload (streamed into an exclusive temp name beside DEST, read
-- back and checked by size and sha256, then renamed: never a partial DEST).
-- DEST is absolute, ~/…, or relative to the login home (like scp). A DEST
-- with the same sha256 and mode is skipped; same bytes, other mode: only
-- the mode is fixed (--force: copied anyway). Audited as AdhocCopy.
local rch = require "rch"
local ui = require "rch.ui"
local adhoc = require "rch.adhoc"
local targets = require "rch.targets"
local steps = require "rch.deploy.remote_steps"
local remote = require "rch.remote"

local M = {}

local function copy_one(conn, src, dest, sha, mode, timeout, force)
  local what, err = "copy", nil
  if not force then what, err = conn:compare(dest, sha, mode, timeout) end
  if not what then return { status = "failed", error = err } end
  if what == "same" then return { status = "skipped" } end
  if what == "chmod" then return { status = "mode fixed" } end
  local ok
  ok, err = conn:put(src, dest, sha, timeout, { mode = mode, mkdirs = false })
  if not ok then return { status = "failed", error = err } end
  return { status = "copied" }
end

--- @param opts {worker, exclude, parallel, mode = "0644", src, dest, json, force = copy even when DEST is the same}
-- @return exit code
-- The checked arguments: {mode (as stat %a prints it), dest (login path), size, sha} | nil, err
local function arguments(opts)
  local mode = tostring(opts.mode or "0644")
  if not mode:match("^[0-7]+$") or tonumber(mode, 8) > 4095 then
    return nil, ("--mode %s is not an octal file mode (e.g. 0644, 0755)"):format(mode)
  end
  local dest, err = remote.login_path(opts.dest)
  if not dest then return nil, "DEST " .. err end
  local size = rch.fs.size(opts.src)
  local sha = size and rch.fs.exists(opts.src) and rch.crypto.sha256_file(opts.src)
  if not sha then return nil, ("cannot read %s: no such file, or not a regular readable file"):format(opts.src) end
  return { mode = ("%o"):format(tonumber(mode, 8)), dest = dest, size = size, sha = sha }
end

function M.run(opts)
  local a, err = arguments(opts)
  if not a then
    ui.error(err)
    return 2
  end
  local mode, dest, size, sha = a.mode, a.dest, a.size, a.sha
  local ctx, code
  ctx, err, code = adhoc.start(opts)
  if not ctx then
    ui.error(err)
    return code
  end
  local timeout = steps.upload_timeout(size, ctx.settings.defaults)
  local started = rch.monotonic()
  local results = adhoc.each(ctx, function(_, conn)
    return copy_one(conn, opts.src, dest, sha, mode, timeout, opts.force)
  end)
  local elapsed = rch.monotonic() - started

  local by, all, status_of, errors = { copied = {}, skipped = {}, ["mode fixed"] = {}, failed = {} }, {}, {}, {}
  local unreachable = {}
  for _, r in ipairs(results) do
    all[#all + 1] = r.worker_id
    if r.unreachable then
      r.status = "failed"
      unreachable[#unreachable + 1] = r.worker_id
    else
      r.status = r.status or "failed"
      table.insert(by[r.status], r.worker_id)
    end
    status_of[r.worker_id] = r.unreachable and "unreachable" or r.status
    if r.error then errors[#errors + 1] = r end
  end
  local sent = size * #by.copied
  ctx.audit:log("AdhocCopy", nil, { src = opts.src, dest = opts.dest, sha256 = sha, size = size, mode = mode,
    workers = targets.fold(all), results = status_of })
  ctx.audit:barrier()

  local failed = #by.failed + #unreachable
  if opts.json then
    local list = rch.json.array()
    for i, r in ipairs(results) do
      list[i] = { worker_id = r.worker_id, status = status_of[r.worker_id], error = r.error or rch.json.null }
    end
    io.stdout:write(ui.json({ src = opts.src, dest = opts.dest, sha256 = sha, size = size, mode = mode,
      bytes_sent = sent, duration_secs = elapsed, workers = list }), "\n")
  else
    io.stdout:write(("copy %s -> %s (%d bytes, sha256 %s…, mode %s): %d copied, %d mode fixed, %d skipped, "
      .. "%d failed; %.1f MB sent in %.2fs (%.1f MB/s)\n"):format(opts.src, opts.dest, size, sha:sub(1, 12), mode,
      #by.copied, #by["mode fixed"], #by.skipped, failed, sent / 1e6, elapsed, sent / 1e6 / math.max(elapsed, 1e-3)))
    adhoc.print_failures({ { label = "failed", ids = by.failed }, { label = "unreachable", ids = unreachable } },
      errors, function(folded)
        return adhoc.shell_words({ "rch", "fleet", "copy", "--worker", folded, "--mode", opts.mode, opts.src,
          opts.dest })
      end)
  end
  return failed == 0 and 0 or 1
end

return M
