--- The artifact each worker gets, by the architecture its `uname -m` names:
-- the local build (artifact.resolve) for that build's own architecture; for
-- any other, rch-wkr from the release of the same version for that
-- architecture, found through [update] url (or RCH_RELEASE_URL), downloaded
-- and verified exactly as `rch update` does (signature of checksums.txt,
-- then the tarball's sha256, before anything is unpacked), unpacked with the
-- safe extraction into $RCH_CACHE_DIR/artifacts/v<ver>-<target>/rch-wkr and
-- checked to be an ELF for that architecture. Fetched once per command, how
-- many workers of that architecture there may be: they wait for one fetch.
local rch = require "rch"
local util = require "rch.util"
local archive = require "rch.archive"
local install = require "rch.install"
local artifact_mod = require "rch.deploy.artifact"
local release_mod = require "rch.update.release"
local download = require "rch.update.download"
local verify = require "rch.update.verify"

local M = {}
local Set = {}
Set.__index = Set

--- What plan.json records of an artifact.
function M.record(a)
  return { path = a.path, sha256 = a.sha256, size = a.size, arch = a.arch, source = a.source or "local",
    target = a.target }
end

--- One line naming an artifact: "aarch64 3f2a1b9c0d4e… from https://…/rch-v1.2.0-aarch64-….tar.gz".
function M.describe(a)
  return ("%s %s… from %s"):format(a.arch, a.sha256:sub(1, 12), a.source or "local")
end

-- Downloads, verifies and unpacks rch-wkr `version` for `arch`.
-- @return artifact {path, version, sha256, size, arch, source (tarball URL), target}, or nil, err
local function fetch(settings, version, arch)
  local url, origin = release_mod.source_url(settings)
  local target = release_mod.target_for_machine(arch)
  local function failed(err)
    return nil, ("no rch-wkr %s for %s: %s (a fleet with %s workers needs release %s with its %s tarball at %s,"
      .. " from %s)"):format(version, arch, err, arch, version, target, url, origin)
  end
  local list, err = release_mod.fetch(url, settings)
  if not list then return failed(err) end
  local release
  release, err = release_mod.pick(list, { version = version })
  if not release then return failed(err) end
  local found
  found, err = release_mod.assets(release, target)
  if not found then return failed(err) end
  rch.log.info(("fetching rch-wkr %s for %s from %s"):format(version, arch, found.tarball.url))
  local fetched
  fetched, err = download.fetch(release, found, { settings = settings, tty = false,
    expected_sha256 = function(text) return (verify.sha256_for(text, found.tarball.name, found.sha256.name)) end })
  if not fetched then return failed(err) end
  -- The signature first, then the checksums: nothing is unpacked before both hold.
  local signature, details = verify.signature(release, fetched, settings.update.minisign_pubkey)
  local tarball_sha
  if signature then tarball_sha, details = verify.checksums(release, found, fetched) end
  if not tarball_sha then
    download.discard(fetched)
    return failed(details)
  end
  if signature == "unsigned" then
    rch.log.warn(("%s: update.minisign_pubkey is not configured: only checksums were verified"):format(
      found.tarball.name))
  end

  local dir = ("%s/artifacts/v%s-%s"):format(rch.config.paths().cache_dir, version, target)
  local ok
  ok, err = rch.fs.mkdirs(dir)
  if not ok then return failed(err) end
  local tmp
  tmp, err = install.mkdtemp(dir, ".extract-")
  if not tmp then return failed(err) end
  local files
  files, err = archive.extract(fetched.tarball, tmp)
  local path = dir .. "/rch-wkr"
  if files then
    err = ("%s has no rch-wkr (files: %s)"):format(found.tarball.name, table.concat(files, ", "))
    for _, f in ipairs(files) do
      if f == "rch-wkr" then ok, err = install.rename(tmp .. "/rch-wkr", path) end
    end
  end
  install.remove_tree(tmp)
  if not (files and ok) then return failed(err) end
  local a
  a, err = artifact_mod.inspect(path, version)
  if not a then return failed(err) end
  if a.arch ~= arch then
    return failed(("rch-wkr in %s is built for %s, not %s"):format(found.tarball.name, a.arch, arch))
  end
  a.source, a.target = found.tarball.url, target
  rch.log.info(("rch-wkr %s for %s: %s (tarball sha256 %s, signature %s)"):format(version, arch, M.describe(a),
    tarball_sha, signature))
  return a
end

--- @param primary the local artifact (artifact.resolve)
-- @param settings config.toml settings
-- @param expected nil, or the artifacts a resumed plan recorded (arch -> {sha256, …}): the same bytes or nothing
-- @return the set
function M.new(primary, settings, expected)
  primary.source = primary.source or "local"
  return setmetatable({ primary = primary, settings = settings, expected = expected or {}, jobs = {} }, Set)
end

--- Called with (arch, record) when another architecture's artifact is first
-- resolved, before any worker gets it; an error (nil, err) refuses it.
function Set:on_new(fn) self.recorder = fn end

--- The artifact for a worker whose `uname -m` is `machine` (an unknown one
-- gets the primary: the preflight hook's architecture check then speaks).
-- @return artifact, or nil, err naming the architecture, the release and its URL
function Set:for_machine(machine)
  local arch = artifact_mod.machine_arch(machine)
  if not arch or arch == self.primary.arch then return self.primary end
  return util.once(self.jobs, arch, function()
    local a, err = fetch(self.settings, self.primary.version, arch)
    if not a then return nil, err end
    local want = self.expected[arch]
    if want and want.sha256 ~= a.sha256 then
      return nil, ("--resume: rch-wkr %s for %s from %s has sha256 %s, the deployment started with %s"):format(
        a.version, arch, a.source, a.sha256, tostring(want.sha256))
    end
    if not want and self.recorder then
      local ok, rerr = self.recorder(arch, M.record(a))
      if not ok then return nil, ("recording the %s artifact: %s"):format(arch, tostring(rerr)) end
    end
    return a
  end)
end

return M
