--- How the artifact travels to one worker: as a zstd patch against the
-- agent the worker runs now (delta), as a zstd frame (compressed), or as
-- the file itself. Frames and patches are made once per artifact (once per
-- base and target for a patch), not per worker, and kept in
-- $RCH_CACHE_DIR/transfer named by sha256. Whatever is sent, the worker
-- checks the sha256 of the file it rebuilt (remote_steps TRANSFER), so a bad
-- cache entry can fail an upload but never install other bytes.
local rch = require "rch"
local archive = require "rch.archive"
local util = require "rch.util"

local M = {}

M.LEVEL = 9           -- made once and cached; 19 is 15x slower for 10 % less (docs/performance.md)
M.MAX_RATIO = 0.9     -- above this share of its size at level 1, data is sent as it is
M.MIN_ZSTD = "1.4.5"  -- the first zstd CLI whose `-d --patch-from` works
M.KEEP = 32           -- cache entries kept (the newest), each an artifact's frame or a patch

local jobs = {} -- cache key -> task making the entry, joined by every worker that needs it

local function cache_dir()
  local dir = rch.config.paths().cache_dir .. "/transfer"
  local ok, err = rch.fs.mkdirs(dir)
  if not ok then return nil, err end
  return dir
end

-- Runs make() once per key in this process; every caller gets its results.
local function once(key, make) return util.once(jobs, key, make) end

-- The oldest entries beyond KEEP go: the cache holds recent builds only.
local function prune(dir)
  local names = rch.fs.list(dir) or {}
  if #names <= M.KEEP then return end
  local aged = {}
  for _, name in ipairs(names) do aged[#aged + 1] = { name = name, t = rch.fs.mtime(dir .. "/" .. name) or 0 } end
  table.sort(aged, function(a, b) return a.t > b.t end)
  for i = M.KEEP + 1, #aged do os.remove(dir .. "/" .. aged[i].name) end
end

--- The artifact as a zstd frame in the cache, made on first use.
-- @return path, size; or nil, why it goes uncompressed
function M.compressed(artifact)
  return once("zstd " .. artifact.sha256, function()
    local dir, err = cache_dir()
    if not dir then return nil, err end
    local zst, plain = ("%s/%s.zst"):format(dir, artifact.sha256), ("%s/%s.plain"):format(dir, artifact.sha256)
    if rch.fs.exists(zst) then return zst, rch.fs.size(zst) end
    if rch.fs.exists(plain) then return nil, "it does not compress (measured earlier)" end
    local size, ratio = archive.zstd_compress({ src = artifact.path, sha256 = artifact.sha256, out = zst,
      level = M.LEVEL, max_ratio = M.MAX_RATIO })
    prune(dir)
    if size == false then
      rch.fs.write_atomic(plain, ("%.3f\n"):format(ratio)) -- the ratio, measured once per artifact
      return nil, ("it does not compress (%d%% of its size at zstd level 1)"):format(math.floor(ratio * 100 + 0.5))
    end
    if not size then return nil, ratio end
    return zst, size
  end)
end

-- The bytes of `sha256` (version `version`) if this controller holds them:
-- an earlier artifact's frame in the cache, or $RCH_HOME/versions/v<ver>/rch-wkr.
local function find_base(dir, sha256, version)
  local zst = ("%s/%s.zst"):format(dir, sha256)
  if rch.fs.exists(zst) then return { path = zst, zst = true } end
  if version then
    local p = ("%s/versions/v%s/rch-wkr"):format(rch.config.paths().home, version)
    if rch.fs.exists(p) and rch.crypto.sha256_file(p) == sha256 then return { path = p } end
  end
  return nil
end

--- A zstd patch from the agent with sha256 `base_sha256` to the artifact, made on first use.
-- @return path, size; or nil, why there is none
function M.patch(artifact, base_sha256, base_version)
  return once("patch " .. base_sha256 .. " " .. artifact.sha256, function()
    local dir, err = cache_dir()
    if not dir then return nil, err end
    local out = ("%s/%s-%s.patch"):format(dir, base_sha256, artifact.sha256)
    if rch.fs.exists(out) then return out, rch.fs.size(out) end
    local base = find_base(dir, base_sha256, base_version)
    if not base then
      return nil, ("this controller does not hold the agent the worker runs (%s, sha256 %s…)")
        :format(base_version or "unknown version", base_sha256:sub(1, 12))
    end
    local size
    size, err = archive.zstd_patch({ base = base.path, base_zst = base.zst, base_sha256 = base_sha256,
      target = artifact.path, target_sha256 = artifact.sha256, out = out, level = M.LEVEL })
    prune(dir)
    if not size then return nil, err end
    return out, size
  end)
end

--- What to send to a worker, from its preflight facts and [deploy] compress/delta.
-- @param no_patch nil, or why no patch is to be tried
-- @return enc for remote_steps.transfer ({method, path, size, base_link, base_sha256}; method
--   "plain" sends the artifact itself), and the reasons the smaller forms were not used
function M.choose(settings, facts, artifact, no_patch)
  local plain = { method = "plain", path = artifact.path, size = artifact.size }
  local why = {}
  if not facts.zstd then return plain, { "the worker has no zstd" } end
  local cfg = settings.deploy
  local zst, zst_size
  if cfg.compress == "never" then
    why[#why + 1] = "[deploy] compress = never"
  else
    zst, zst_size = M.compressed(artifact)
    if not zst then why[#why + 1] = "not compressed: " .. tostring(zst_size) end
  end
  local base = facts.current_sha256
  if no_patch then
    why[#why + 1] = "no patch: " .. no_patch
  elseif cfg.delta == "never" then
    why[#why + 1] = "[deploy] delta = never"
  elseif not base then
    why[#why + 1] = "no patch: no agent installed to patch"
  elseif not (facts.zstd_version and rch.version.parse(facts.zstd_version)
    and rch.version.compare(facts.zstd_version, M.MIN_ZSTD) >= 0) then
    why[#why + 1] = ("no patch: zstd %s on the worker is older than %s (--patch-from)")
      :format(facts.zstd_version or "of unknown version", M.MIN_ZSTD)
  else
    local path, size = M.patch(artifact, base, facts.current_version)
    if not path then
      why[#why + 1] = "no patch: " .. tostring(size)
    elseif size >= (zst_size or artifact.size * M.MAX_RATIO) then
      why[#why + 1] = ("no patch: at %s it saves too little"):format(util.bytes_text(size))
    else
      return { method = "patch", path = path, size = size, base_link = facts.current_link, base_sha256 = base,
        base_version = facts.current_version, key = "patch " .. base .. " " .. artifact.sha256 }, why
    end
  end
  if zst then return { method = "zstd", path = zst, size = zst_size, key = "zstd " .. artifact.sha256 }, why end
  return plain, why
end

--- Forgets a cache entry that an upload failed with (a corrupt file, or
-- one the worker could not decode): the next use makes it again.
function M.discard(enc)
  if enc.method == "plain" then return end
  os.remove(enc.path)
  jobs[enc.key] = nil
end

--- One line on how the artifact went: "zstd patch (198 bytes) against 1.2.0".
function M.describe(enc)
  if enc.method == "pull" then return "release tarball fetched by the worker from " .. enc.url end
  if enc.method == "patch" then
    return ("zstd patch (%s) against %s"):format(util.bytes_text(enc.size), enc.base_version or enc.base_link)
  end
  if enc.method == "zstd" then return ("zstd-compressed (%s)"):format(util.bytes_text(enc.size)) end
  return ("whole file (%s)"):format(util.bytes_text(enc.size))
end

--- Uploads the artifact to ws (connected, preflight done) the smallest way
-- it can; a patch whose base changed on the worker since preflight is
-- followed by the compressed or whole file. Logs how, and why not smaller.
-- @return verified facts, enc (what was sent); or nil, err
function M.send(d, ws, progress)
  local artifact = ws.artifact
  -- Another architecture's build has its own size to scale the timeout with.
  local timeout = artifact == d.artifact and d.transfer_timeout
    or require("rch.deploy.remote_steps").upload_timeout(artifact.size, d.settings.defaults)
  local enc, why = { method = "plain", path = artifact.path, size = artifact.size }, {}
  if ws.conn.encoded_uploads then enc, why = M.choose(d.settings, ws.facts, artifact) end
  local function log_choice(level)
    rch.log[level](("worker %s: sending %s%s"):format(ws.id, M.describe(enc),
      #why > 0 and " (" .. table.concat(why, "; ") .. ")" or ""))
  end
  log_choice("info")
  local verified, err, failed = ws.conn:transfer(ws.root, d.target_version, artifact, timeout, progress, enc)
  if not verified and failed == "base" then
    -- Its agent changed since preflight read the manifest: patch nothing, send it all.
    enc, why = M.choose(d.settings, ws.facts, artifact, err)
    log_choice("warn")
    verified, err = ws.conn:transfer(ws.root, d.target_version, artifact, timeout, progress, enc)
  end
  if not verified then
    M.discard(enc)
    return nil, err
  end
  return verified, enc
end

return M
