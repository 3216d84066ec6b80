--- The local install tree under $RCH_HOME:
--   versions/v<ver>/{rch,rchd,rch-wkr,RELEASE_NOTES.md,manifest.json}
--   current -> versions/v<ver>         (switched with one rename)
--   bin/{rch,rchd,rch-wkr} -> ../current/<name>
--   update-state.json                  ({current, previous, updated_at})
--   .staging-*                         (private temp dirs; removed by the next run)
-- Staging, checking the new binaries, installing, switching, pruning,
-- rollback targets and --verify of an installation.
local rch = require "rch"
local archive = require "rch.archive"
local install = require "rch.install"
local util = require "rch.util"

local M = {}

M.BINARIES = { "rch", "rchd", "rch-wkr" }

local function versions_dir(home) return home .. "/versions" end

--- The directory of version `v` ("0.2.0") under home.
function M.version_dir(home, v) return versions_dir(home) .. "/v" .. v end

--- The version `current` points at, or nil (no link, or not versions/v<semver>).
-- @return version, link target
function M.current_version(home)
  local target = install.readlink(home .. "/current")
  if not target then return nil end
  local name = target:match("^versions/v([^/]+)/?$") or target:match("/versions/v([^/]+)/?$")
  return name and rch.version.parse(name) or nil, target
end

--- Installed versions (directories versions/v<semver>), newest first.
function M.installed(home)
  local names = rch.fs.list(versions_dir(home))
  local list = {}
  for _, n in ipairs(names or {}) do
    local v = n:match("^v(.+)$")
    v = v and rch.version.parse(v)
    if v and ("v" .. v) == n and install.kind(versions_dir(home) .. "/" .. n) == "dir" then list[#list + 1] = v end
  end
  table.sort(list, function(a, b) return rch.version.compare(a, b) > 0 end)
  return list
end

--- update-state.json, or {} when absent or unreadable.
function M.read_state(home)
  local text = rch.fs.read(home .. "/update-state.json")
  local state = text and rch.json.decode(text)
  return type(state) == "table" and state or {}
end

function M.write_state(home, state)
  state.updated_at = util.iso_now()
  return rch.fs.write_atomic(home .. "/update-state.json", rch.json.encode(state, { pretty = true }) .. "\n")
end

--- Removes what a killed run left behind: .staging-* under home and bin/.
-- Only call it while holding update.lock (a running update owns its staging dir).
function M.cleanup_staging(home)
  local removed = {}
  for _, dir in ipairs({ home, home .. "/bin" }) do
    for _, n in ipairs(rch.fs.list(dir) or {}) do
      if n:find("^%.staging%-") then
        local path = dir .. "/" .. n
        local ok, err
        if install.kind(path) == "dir" then
          ok, err = install.remove_tree(path)
        else
          ok, err = install.remove(path)
        end
        if not ok then return nil, err end
        removed[#removed + 1] = path
      end
    end
  end
  return removed
end

--- Runs `path --version`; it must print exactly "<name> <version>".
function M.check_binary(path, name, version)
  if not install.executable(path) then return nil, ("%s is missing or not executable"):format(path) end
  local run, err = rch.sys.run({ path, "--version" }, 20)
  if not run then return nil, ("%s --version: %s"):format(path, err) end
  local printed = util.chomp(run.out)
  if run.code ~= 0 then
    return nil, ("%s --version exited %d: %s"):format(path, run.code, util.chomp(run.err))
  end
  if printed ~= name .. " " .. version then
    return nil, ("%s --version printed '%s', expected '%s %s'"):format(path, printed, name, version)
  end
  return true
end

--- Extracts the verified tarball into a new private dir under home and checks
-- it: the three binaries present, each reporting the release version. Writes
-- manifest.json there.
-- @param info {version, tarball, tarball_sha256, source_url, signature}
-- @return staging dir, manifest; or nil, err (the staging dir is removed again)
function M.stage(home, info)
  local dir, err = install.mkdtemp(home, ".staging-v" .. info.version .. "-")
  if not dir then return nil, err end
  local function fail(message)
    install.remove_tree(dir)
    return nil, message
  end
  local files
  files, err = archive.extract(info.tarball, dir)
  if not files then return fail(("refusing %s: %s"):format(info.tarball, err)) end
  local manifest = {
    version = info.version,
    installed_at = util.iso_now(),
    source = info.source_url,
    tarball_sha256 = info.tarball_sha256,
    signature = info.signature,
    files = {},
  }
  for _, f in ipairs(files) do
    if f:find("/", 1, true) then return fail(("%s: unexpected entry %s (only top-level files)"):format(info.tarball, f)) end
    if f == "manifest.json" then return fail(("%s: contains a manifest.json"):format(info.tarball)) end
  end
  for _, name in ipairs(M.BINARIES) do
    local ok, cerr = M.check_binary(dir .. "/" .. name, name, info.version)
    if not ok then return fail(("%s: %s"):format(info.tarball, cerr)) end
  end
  for _, f in ipairs(files) do
    local sha, serr = rch.crypto.sha256_file(dir .. "/" .. f)
    if not sha then return fail(serr) end
    manifest.files[f] = { sha256 = sha, size = rch.fs.size(dir .. "/" .. f) }
  end
  local ok
  ok, err = rch.fs.write_atomic(dir .. "/manifest.json", rch.json.encode(manifest, { pretty = true }) .. "\n")
  if not ok then return fail(err) end
  ok, err = install.chmod(dir, tonumber("755", 8))
  if not ok then return fail(err) end
  return dir, manifest
end

--- Moves the staging dir to versions/v<ver>. An existing directory of that
-- version (a --force reinstall, or a version installed before) is exchanged
-- atomically, so versions/v<ver> never lacks a binary, then removed.
function M.place(home, staging, version)
  local ok, err = rch.fs.mkdirs(versions_dir(home), tonumber("755", 8))
  if not ok then return nil, err end
  local dest = M.version_dir(home, version)
  if install.kind(dest) == nil then return install.rename(staging, dest) end
  local unsupported
  ok, err, unsupported = install.exchange(staging, dest)
  if not ok and unsupported and M.current_version(home) ~= version then
    -- No RENAME_EXCHANGE here: move the old one aside (it is not current, so nothing runs from it).
    local aside
    aside, err = install.mkdtemp(home, ".staging-old-")
    if not aside then return nil, err end
    ok, err = install.rename(dest, aside .. "/v" .. version)
    if ok then ok, err = install.rename(staging, dest) end
    if not ok then return nil, err end
    install.remove_tree(aside)
    return true
  end
  if not ok then return nil, err end
  -- `staging` now holds the old copy.
  install.remove_tree(staging)
  return true
end

--- Points current at versions/v<ver> with one rename and makes sure the bin/
-- links exist.
function M.switch(home, version)
  local dest = M.version_dir(home, version)
  for _, name in ipairs(M.BINARIES) do
    if not install.executable(dest .. "/" .. name) then
      return nil, ("refusing to switch to %s: %s/%s is missing or not executable"):format(version, dest, name)
    end
  end
  local ok, err = install.symlink_replace("versions/v" .. version, home .. "/current")
  if not ok then return nil, err end
  return M.ensure_bin_links(home)
end

--- bin/<name> -> ../current/<name> for each binary (replaced by one rename when wrong).
function M.ensure_bin_links(home)
  local ok, err = rch.fs.mkdirs(home .. "/bin", tonumber("755", 8))
  if not ok then return nil, err end
  for _, name in ipairs(M.BINARIES) do
    local link = home .. "/bin/" .. name
    local want = "../current/" .. name
    if install.readlink(link) ~= want then
      ok, err = install.symlink_replace(want, link)
      if not ok then return nil, err end
    end
  end
  return true
end

--- Deletes old versions beyond `keep`: current and previous always stay, then
-- the newest others until `keep` versions remain.
-- @return list of removed versions, or nil, err
function M.prune(home, keep, current, previous)
  keep = math.max(tonumber(keep) or 3, 1)
  local kept, removed = {}, {}
  local count = 0
  for _, v in ipairs({ current, previous }) do
    if v and not kept[v] then
      kept[v] = true
      count = count + 1
    end
  end
  for _, v in ipairs(M.installed(home)) do
    if not kept[v] then
      if count < keep then
        kept[v] = true
        count = count + 1
      else
        local ok, err = install.remove_tree(M.version_dir(home, v))
        if not ok then return nil, err end
        removed[#removed + 1] = v
      end
    end
  end
  return removed
end

--- The version --rollback switches to: update-state.json's previous when it
-- is still installed and is not current, else the newest installed version
-- below current.
-- @return version, or nil, err
function M.rollback_target(home)
  local current = M.current_version(home)
  if not current then return nil, ("no current installation: %s/current is not a link to versions/v<ver>"):format(home) end
  local state = M.read_state(home)
  local installed = M.installed(home)
  local have = {}
  for _, v in ipairs(installed) do have[v] = true end
  if type(state.previous) == "string" and state.previous ~= current and have[state.previous] then
    return state.previous, current
  end
  for _, v in ipairs(installed) do
    if rch.version.compare(v, current) < 0 then return v, current end
  end
  return nil, ("no version to roll back to: %s holds only %s"):format(versions_dir(home), table.concat(installed, ", "))
end

--- Checks the installation: current link, manifest, every file's sha256, each
-- binary's --version, and the bin/ links.
-- @return report {current_version, findings = list of strings, files = list of {name, ok, expected, actual}}
function M.verify(home)
  local report = { home = home, findings = {}, files = {} }
  local function finding(fmt, ...) report.findings[#report.findings + 1] = fmt:format(...) end
  local current, target = M.current_version(home)
  if not current then
    if install.kind(home .. "/current") == nil then
      finding("%s/current does not exist (nothing installed by rch update)", home)
    else
      finding("%s/current is not a link to versions/v<version> (it is %s)", home,
        tostring(target or install.kind(home .. "/current")))
    end
    return report
  end
  report.current_version = current
  local dir = M.version_dir(home, current)
  if install.kind(dir) ~= "dir" then
    finding("%s/current points to %s, which does not exist", home, target)
    return report
  end
  local text = rch.fs.read(dir .. "/manifest.json")
  local manifest = text and rch.json.decode(text)
  if type(manifest) ~= "table" or type(manifest.files) ~= "table" then
    finding("%s/manifest.json is missing or unreadable", dir)
  else
    if manifest.version ~= current then
      finding("%s/manifest.json is for version %s, not %s", dir, tostring(manifest.version), current)
    end
    local names = {}
    for name in pairs(manifest.files) do names[#names + 1] = name end
    table.sort(names)
    for _, name in ipairs(M.BINARIES) do
      if not manifest.files[name] then finding("%s/manifest.json does not list %s", dir, name) end
    end
    for _, name in ipairs(names) do
      local want = manifest.files[name].sha256
      local path = dir .. "/" .. name
      local entry = { name = name, expected = want, ok = false }
      local kind = install.kind(path)
      if kind ~= "file" then
        finding("%s is %s", path, kind and ("a " .. kind .. ", not a regular file") or "missing")
      else
        entry.actual = rch.crypto.sha256_file(path)
        entry.ok = entry.actual == want
        if not entry.ok then finding("%s has sha256 %s, manifest says %s", path, tostring(entry.actual), tostring(want)) end
      end
      report.files[#report.files + 1] = entry
    end
  end
  for _, name in ipairs(M.BINARIES) do
    local ok, err = M.check_binary(dir .. "/" .. name, name, current)
    if not ok then report.findings[#report.findings + 1] = err end
    local link = home .. "/bin/" .. name
    local to = install.readlink(link)
    if to ~= "../current/" .. name then
      finding("%s is %s, expected a link to ../current/%s", link,
        to and ("a link to " .. to) or (install.kind(link) and ("a " .. install.kind(link)) or "missing"), name)
    elseif not install.executable(link) then
      finding("%s does not resolve to an executable file", link)
    end
  end
  return report
end

return M
