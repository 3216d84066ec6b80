--- Discovery for rch update: fetch the releases JSON (GitHub REST shape, a
-- list or one object), normalize it, and pick the release to install through
-- the channels hook or a --version pin. Also names this platform's assets.
local rch = require "rch"
local net = require "rch.net"
local hooks = require "rch.hooks"

local M = {}

M.TARGETS = { x64 = "x86_64-unknown-linux-gnu", arm64 = "aarch64-unknown-linux-gnu" }

--- The target triple of this machine, as in asset names.
function M.target()
  return M.TARGETS[jit.arch] or (jit.arch .. "-unknown-linux-gnu")
end

--- The target triple of a worker whose `uname -m` (or ELF architecture) is `machine`.
function M.target_for_machine(machine)
  if machine == "amd64" then machine = "x86_64" end
  if machine == "arm64" then machine = "aarch64" end
  return machine .. "-unknown-linux-gnu"
end

--- Where the release list comes from: RCH_RELEASE_URL, else config update.url.
function M.source_url(settings)
  local env = os.getenv("RCH_RELEASE_URL")
  if env and env ~= "" then return env, "RCH_RELEASE_URL" end
  return settings.update.url, "update.url in config.toml"
end

--- Download options from config.toml [update].
function M.net_options(settings, extra)
  local o = {
    ca_file = settings.update.ca_file ~= "" and settings.update.ca_file or nil,
    connect_timeout = settings.update.connect_timeout,
    transfer_timeout = settings.update.transfer_timeout,
  }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

local function str(v) return type(v) == "string" and v or nil end

-- One release object -> normalized record, or nil, why it is skipped.
local function normalize(raw, index)
  if type(raw) ~= "table" then return nil, ("entry %d is not an object"):format(index) end
  local tag = str(raw.tag_name)
  if not tag or tag == "" then return nil, ("entry %d has no tag_name"):format(index) end
  local version = rch.version.parse(tag)
  if not version then return nil, ("tag %s is not a semver version"):format(tag) end
  local assets = {}
  if type(raw.assets) == "table" then
    for _, a in ipairs(raw.assets) do
      if type(a) == "table" and str(a.name) and str(a.browser_download_url) then
        assets[#assets + 1] = { name = a.name, size = tonumber(a.size) or 0, url = a.browser_download_url }
      end
    end
  end
  return {
    version = version,
    tag = tag,
    name = str(raw.name) or tag,
    prerelease = raw.prerelease == true,
    draft = raw.draft == true,
    published_at = str(raw.published_at),
    body = str(raw.body) or "",
    html_url = str(raw.html_url) or str(raw.url),
    assets = assets,
    raw = raw,
  }
end

--- Fetches and parses the release list.
-- @return list of releases, newest first (semver), or nil, err naming the URL
function M.fetch(url, settings)
  local body, err = net.get(url, M.net_options(settings, { max_bytes = 32 * 1024 * 1024 }))
  if not body then return nil, ("cannot fetch the release list: %s"):format(err) end
  local doc = rch.json.decode(body)
  if type(doc) ~= "table" then return nil, ("%s: not a JSON releases list"):format(url) end
  if doc.tag_name ~= nil then doc = { doc } end -- a single release object
  local list = {}
  for i, raw in ipairs(doc) do
    local r, why = normalize(raw, i)
    if r then
      r.source_url = url
      list[#list + 1] = r
    else
      rch.log.debug(("%s: skipping release: %s"):format(url, why))
    end
  end
  if #list == 0 then return nil, ("%s lists no release with a semver tag"):format(url) end
  table.sort(list, function(a, b)
    local c = rch.version.compare(a.version, b.version)
    if c ~= 0 then return c > 0 end
    return (a.published_at or "") > (b.published_at or "")
  end)
  return list
end

--- Picks the release: the pinned version, else the channel hook's choice.
-- @return release, or nil, err
function M.pick(list, opts)
  if opts.version and opts.version ~= "" then
    local want, err = rch.version.parse(opts.version)
    if not want then return nil, ("--version %s: %s"):format(opts.version, err) end
    for _, r in ipairs(list) do
      if not r.draft and rch.version.compare(r.version, want) == 0 then return r end
    end
    local have = {}
    for _, r in ipairs(list) do
      if not r.draft then have[#have + 1] = r.version end
    end
    return nil, ("no release %s at %s (available: %s)"):format(want, list[1].source_url,
      #have > 0 and table.concat(have, ", ") or "none")
  end
  local ok, chosen, why = hooks.call("channels", {
    channel = opts.channel,
    releases = list,
    current_version = opts.current_version,
    compare = rch.version.compare,
    log = rch.log,
  })
  if not ok then return nil, chosen end
  if not chosen then
    return nil, ("%s: %s"):format(list[1].source_url, why or ("no release for channel " .. tostring(opts.channel)))
  end
  if type(chosen) ~= "table" or not chosen.version then
    return nil, ("hook channels (%s) returned %s, not a release"):format(hooks.get("channels").origin, type(chosen))
  end
  return chosen
end

M.SIGNATURE_NAMES = { "checksums.txt.minisig", "checksums.txt.sig" }

--- Every asset of `found` that an update downloads, in order.
function M.downloads(found)
  local list = { found.tarball, found.sha256, found.checksums }
  for _, s in ipairs(found.signatures) do list[#list + 1] = s end
  return list
end

--- The assets of `release` for `target` (default: this machine's target).
-- @return {tarball, sha256, checksums, signatures (list, may be empty), notes (may be nil)}, or nil, err
function M.assets(release, target)
  local tarball_name = ("rch-v%s-%s.tar.gz"):format(release.version, target or M.target())
  local by_name = {}
  for _, a in ipairs(release.assets) do by_name[a.name] = a end
  local want = {
    tarball = tarball_name,
    sha256 = tarball_name .. ".sha256",
    checksums = "checksums.txt",
  }
  local found = {}
  for key, name in pairs(want) do
    if not by_name[name] then
      return nil, ("release %s has no asset %s (assets: %s)"):format(release.tag, name,
        (function()
          local names = {}
          for _, a in ipairs(release.assets) do names[#names + 1] = a.name end
          return #names > 0 and table.concat(names, ", ") or "none"
        end)())
    end
    found[key] = by_name[name]
  end
  -- minisign's own name, and the spec's: the same format; when both are there both must verify.
  found.signatures = {}
  for _, name in ipairs(M.SIGNATURE_NAMES) do
    if by_name[name] then found.signatures[#found.signatures + 1] = by_name[name] end
  end
  found.notes = by_name["RELEASE_NOTES.md"]
  -- Everything comes from one place: over https, no asset may come over plain http.
  if release.source_url:lower():find("^https://") then
    for _, a in ipairs(M.downloads(found)) do
      if not a.url:lower():find("^https://") then
        return nil, ("release %s: asset %s is served over plain http (%s) while the release list came over https")
          :format(release.tag, a.name, a.url)
      end
    end
  end
  return found
end

--- Release notes: the release body, else its RELEASE_NOTES.md asset (or "").
function M.notes(release, settings)
  if release.body ~= "" then return release.body end
  local ok, found = pcall(M.assets, release)
  local notes = ok and found and found.notes
  if notes then
    local body = net.get(notes.url, M.net_options(settings, { max_bytes = 1024 * 1024 }))
    if body then return body end
  end
  return ""
end

return M
