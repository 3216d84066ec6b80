--- Download of a release's assets into $RCH_CACHE_DIR/downloads/v<ver>/:
-- the small ones (.sha256, checksums.txt, .minisig) are fetched fresh every
-- time; the tarball resumes a .part left by an interrupted run and is capped
-- at the size the release announces. A progress bar is drawn on a TTY.
local rch = require "rch"
local net = require "rch.net"
local install = require "rch.install"
local release_mod = require "rch.update.release"
local ui = require "rch.ui"

local M = {}

local SMALL_CAP = 1024 * 1024

--- "12.3 MB" style sizes.
function M.human_size(bytes)
  bytes = tonumber(bytes) or 0
  if bytes >= 1024 * 1024 then return ("%.1f MB"):format(bytes / (1024 * 1024)) end
  if bytes >= 1024 then return ("%.1f KB"):format(bytes / 1024) end
  return ("%d B"):format(bytes)
end

local function rate_text(done, started)
  return (" (%s/s)"):format(M.human_size(done / math.max(rch.monotonic() - started, 0.001)))
end

local function bar(name, done, total, started)
  local rate = rate_text(done, started)
  if total and total > 0 then
    local frac = math.min(done / total, 1)
    local width = 24
    local fill = math.floor(frac * width + 0.5)
    return ("  %s [%s%s] %3d%% %s / %s%s"):format(name, ("#"):rep(fill), ("-"):rep(width - fill),
      math.floor(frac * 100), M.human_size(done), M.human_size(total), rate)
  end
  return ("  %s %s%s"):format(name, M.human_size(done), rate)
end

-- Downloads one large file with a live bar on stdout when `tty`, and its
-- progress in the log at info level (every 2 s, and when it ends).
local function download_with_progress(asset, dest, options, tty)
  local logging = rch.log.enabled("info")
  if not tty and not logging then return net.download(asset.url, dest, options) end
  local progress = net.progress()
  options.progress = progress
  local finished = false
  local started = rch.monotonic()
  local function report(final)
    local done, total = progress:get()
    total = total > 0 and total or asset.size
    if tty then
      -- The bar redraws its line: \r and erase-to-end are control output, the text is data.
      ui.control("\r")
      io.stdout:write(bar(asset.name, done, total, started))
      ui.control(final and "\27[K\n" or "\27[K")
      io.stdout:flush()
    end
    return done, total
  end
  local drawer = rch.spawn(function()
    local logged = rch.monotonic()
    while not finished do
      local done, total = report(false)
      if logging and rch.monotonic() - logged >= 2 then
        logged = rch.monotonic()
        rch.log.info(("downloading %s: %s of %s%s"):format(asset.name, M.human_size(done), M.human_size(total),
          rate_text(done, started)))
      end
      rch.sleep(0.1)
    end
  end)
  local ok, err = net.download(asset.url, dest, options)
  finished = true
  rch.join(drawer)
  local done, total = report(true)
  if logging and ok then
    rch.log.info(("downloaded %s: %s of %s%s"):format(asset.name, M.human_size(done), M.human_size(total),
      rate_text(done, started)))
  end
  return ok, err
end

--- Fetches a small asset (a checksum list, a signature), never from the
-- cache, into dir/<its name>. @return its text, or nil, err
function M.small(asset, settings, dir)
  local body, err = net.get(asset.url, release_mod.net_options(settings, {
    max_bytes = (asset.size > 0 and asset.size < SMALL_CAP) and asset.size or SMALL_CAP,
  }))
  if not body then return nil, err end
  local ok, werr = rch.fs.write_atomic(dir .. "/" .. asset.name, body)
  if not ok then return nil, werr end
  return body
end

--- Fetches the assets of `release` into the cache.
-- @param found the release's assets (release.assets())
-- @param opts {settings, tty = draw a progress bar, expected_sha256 = function(text of .sha256) -> hex}
-- @return {dir, tarball, sha256_text, checksums_text, signatures = {{name, text}}, checksums_path, reused},
-- or nil, err
function M.fetch(release, found, opts)
  local settings = opts.settings
  local dir = rch.config.paths().cache_dir .. "/downloads/v" .. release.version
  local ok, err = rch.fs.mkdirs(dir)
  if not ok then return nil, err end
  local out = { dir = dir }

  local function small(asset) return M.small(asset, settings, dir) end

  out.sha256_text, err = small(found.sha256)
  if not out.sha256_text then return nil, err end
  out.checksums_text, err = small(found.checksums)
  if not out.checksums_text then return nil, err end
  out.checksums_path = dir .. "/" .. found.checksums.name
  out.signatures = {}
  local present = {}
  for _, asset in ipairs(found.signatures) do
    local text
    text, err = small(asset)
    if not text then return nil, err end
    out.signatures[#out.signatures + 1] = { name = asset.name, text = text }
    present[asset.name] = true
  end
  -- A signature the release no longer has must not linger from an earlier download.
  for _, name in ipairs(release_mod.SIGNATURE_NAMES) do
    if not present[name] then install.remove(dir .. "/" .. name) end
  end

  -- A tarball cached by an earlier run is reused when it has the announced digest.
  out.tarball = dir .. "/" .. found.tarball.name
  local want = opts.expected_sha256 and opts.expected_sha256(out.sha256_text)
  if want and rch.fs.exists(out.tarball) then
    local have = rch.crypto.sha256_file(out.tarball)
    if have == want then
      out.reused = true
      return out
    end
    install.remove(out.tarball)
  end
  local options = release_mod.net_options(settings, { max_bytes = found.tarball.size > 0 and found.tarball.size or nil })
  ok, err = download_with_progress(found.tarball, out.tarball, options, opts.tty)
  if not ok then return nil, err end
  return out
end

--- Forgets a cached tarball (and its .part) that failed verification, so the
-- next run downloads it again instead of resuming into the same bytes.
function M.discard(fetched)
  if fetched and fetched.tarball then
    install.remove(fetched.tarball)
    install.remove(fetched.tarball .. ".part")
  end
end

return M
