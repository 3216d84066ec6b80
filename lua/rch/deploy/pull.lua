--- Pull mode (`rch fleet deploy --source pull`, [deploy] source = "pull"):
-- each worker fetches the release tarball for its own architecture from the
-- release mirror and installs the tarball's rch-wkr; the controller sends
-- only commands. Before any worker is touched, the controller resolves the
-- release of the target version (the update machinery: [update] url or
-- RCH_RELEASE_URL) and verifies the signature of its checksums.txt exactly
-- as `rch update` does; a worker then accepts only a tarball with the
-- sha256 that this signed list gives (remote_steps PULL).
--
-- The sha256 of the rch-wkr inside a tarball is in no signed list (the
-- release signs the tarballs), so the worker reports the sha256 of the file
-- it extracted, the manifest records it with the tarball's sha256, and the
-- verify step checks the agent's --version. A worker whose manifest names
-- the same tarball holds that rch-wkr already: its sha256 is then known, and
-- an unchanged redeploy skips it like a push does.
local rch = require "rch"
local release_mod = require "rch.update.release"
local download = require "rch.update.download"
local verify = require "rch.update.verify"

local M = {}

M.SOURCES = { push = true, pull = true }

--- Where the agent comes from: --source, else [deploy] source.
-- @return "push" | "pull", or nil, err
function M.source(options, settings)
  local source = options.source
  if source == nil or source == "" then source = settings.deploy.source end
  if not M.SOURCES[source] then return nil, ("--source %s: must be push or pull"):format(tostring(source)) end
  return source
end

local function is_https(url) return url:lower():find("^https://") ~= nil end

--- Resolves the release of `version` and verifies its signed checksums.txt.
-- @return the deploy's artifact {version, size (largest tarball: the transfer timeout),
--   release = {version, tag, url (the release list's), https, sums, assets, signature}},
--   or nil, err
function M.resolve(settings, version)
  local target = rch.version.current()
  if version and version ~= "" then
    local parsed, err = rch.version.parse(version)
    if not parsed then return nil, ("--version %s: %s"):format(version, err) end
    target = parsed
  end
  if require("rch.transport").impl() ~= require("rch.transport.ssh") then
    return nil, "--source pull needs real workers: the simulated fleet (RCH_MOCK_SSH) cannot fetch"
  end
  local url, from = release_mod.source_url(settings)
  local list, err = release_mod.fetch(url, settings)
  if not list then return nil, ("--source pull: %s (%s)"):format(err, from) end
  local rel
  rel, err = release_mod.pick(list, { version = target })
  if not rel then return nil, "--source pull: " .. err end
  local assets = {}
  for _, a in ipairs(rel.assets) do assets[a.name] = a end
  local wanted = { assets["checksums.txt"] }
  if not wanted[1] then return nil, ("--source pull: release %s has no asset checksums.txt"):format(rel.tag) end
  local fetched = { signatures = {} }
  for _, name in ipairs(release_mod.SIGNATURE_NAMES) do
    if assets[name] then wanted[#wanted + 1] = assets[name] end
  end
  local dir = rch.config.paths().cache_dir .. "/pull/v" .. target
  local ok
  ok, err = rch.fs.mkdirs(dir)
  if not ok then return nil, err end
  for i, asset in ipairs(wanted) do
    if is_https(url) and not is_https(asset.url) then
      return nil, ("release %s: asset %s is served over plain http (%s) while the release list came over https")
        :format(rel.tag, asset.name, asset.url)
    end
    local text
    text, err = download.small(asset, settings, dir)
    if not text then return nil, "--source pull: " .. err end
    if i == 1 then
      fetched.checksums_text, fetched.checksums_path = text, dir .. "/" .. asset.name
    else
      fetched.signatures[#fetched.signatures + 1] = { name = asset.name, text = text }
    end
  end
  local signature, details = verify.signature(rel, fetched, settings.update.minisign_pubkey)
  if not signature then return nil, "--source pull: " .. details end
  if signature == "unsigned" then
    rch.log.warn(("update.minisign_pubkey is not configured: workers pull release %s checked against its"
      .. " checksums.txt only (no signature check)"):format(rel.tag))
  end
  local sums
  sums, err = rch.crypto.parse_checksums(fetched.checksums_text)
  if not sums then return nil, ("checksums.txt of %s %s"):format(rel.tag, err) end
  local size = 0
  for name, a in pairs(assets) do
    if sums[name] and name:find("%.tar%.gz$") then size = math.max(size, a.size) end
  end
  rch.log.info(("--source pull: release %s from %s, checksums.txt %s"):format(rel.tag, url,
    signature == "verified" and ("signed by key " .. details.key_id) or "unsigned"))
  return { version = target, size = size, release = { version = target, tag = rel.tag, url = url,
    https = is_https(url), sums = sums, assets = assets, signature = signature } }
end

--- The tarball a worker whose `uname -m` is `machine` fetches.
-- @return {name, url, sha256 (signed), size, target}, or nil, why there is none
function M.tarball(src, machine)
  local target = release_mod.target_for_machine(machine)
  local name = ("rch-v%s-%s.tar.gz"):format(src.version, target)
  local asset = src.assets[name]
  if not asset then return nil, ("release %s has no %s for this %s worker"):format(src.tag, name, machine) end
  local sha = src.sums[name]
  if not sha then return nil, ("the signed checksums.txt of %s has no line for %s"):format(src.tag, name) end
  if src.https and not is_https(asset.url) then
    return nil, ("release %s: %s is served over plain http (%s) while the release list came over https")
      :format(src.tag, name, asset.url)
  end
  return { name = name, url = asset.url, sha256 = sha, size = asset.size, target = target }
end

-- What the worker-side scripts take.
local function params(src, tarball, settings)
  return { url = tarball.url, sha256 = tarball.sha256, https = src.https,
    connect_timeout = settings.update.connect_timeout }
end

--- Pull mode's part of preflight: the worker's artifact from its facts and,
-- unless the worker holds that tarball's rch-wkr already, whether it can
-- fetch it (facts.fetch_tool, fetch_missing, fetch_reachable, fetch_error:
-- the preflight hook turns them into issues).
-- @param probed what a previous call probed on this worker (not asked again)
-- @return artifact {version, size, sha256 (nil: not known before the pull), probe,
--   pull = tarball | {missing = why}}, or nil, err
function M.preflight(src, conn, facts, settings, timeout, probed)
  local tarball, why = M.tarball(src, facts.arch or "unknown")
  local a = { version = src.version, size = tarball and tarball.size or 0, pull = tarball or { missing = why } }
  if not tarball then return a end
  if facts.manifest_tarball_sha256 == tarball.sha256 then a.sha256 = facts.manifest_sha256 end
  if a.sha256 and facts.target_sha256 == a.sha256 then return a end
  local probe, err = probed
  if not probe then probe, err = conn:pull_probe(params(src, tarball, settings), timeout) end
  if not probe then return nil, err end
  for k, v in pairs(probe) do facts[k] = v end
  a.probe = probe
  return a
end

--- The transfer step in pull mode: the worker fetches, checks and unpacks.
-- @return verified {sha256, size, mtime, tarball_sha256}, how {method = "pull", url, size = 0}; or nil, err
function M.send(d, ws)
  local tarball = ws.artifact.pull
  rch.log.info(("worker %s: pulling %s (sha256 %s…)"):format(ws.id, tarball.url, tarball.sha256:sub(1, 12)))
  local verified, err = ws.conn:pull(ws.root, d.target_version, params(d.artifact.release, tarball, d.settings),
    d.transfer_timeout)
  if not verified then return nil, err end
  verified.tarball_sha256 = tarball.sha256
  return verified, { method = "pull", url = tarball.url, size = 0 }
end

return M
