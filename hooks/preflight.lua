--- Hook preflight: turns the facts probed on a worker into issues. An issue
-- of severity "error" blocks the deploy on that worker; "warning" is shown.
-- Replace it to add site checks; call builtin(ctx) to keep these.
-- @param ctx { worker, facts = {arch, disk_free_mb, writable, rsync, zstd, rustup,
--   current_version, current_link, versions, target_sha256, target_size, target_mtime, manifest_sha256,
--   root_unsafe, draining}, settings (config.toml),
--   artifact = the build this worker gets {arch, size, sha256, version, path, source; in pull mode
--   sha256 may be nil (not known before the pull) and pull = {url, sha256} or {missing = why}},
--   options = deploy options }
-- In pull mode facts also has fetch_tool ("curl", "wget" or nil), fetch_missing ("tar gzip"…),
-- fetch_reachable and fetch_error (a HEAD of the tarball URL from the worker).
-- Called once per read of the facts: a worker that is to change is read twice (without the
-- lease, then under it, since another controller may have changed it meanwhile), so a
-- replacement must only judge the facts it is given (no side effects, no counting of calls).
-- @return list of { severity, check, message, remediation }
local machine_arch = require("rch.deploy.artifact").machine_arch

return function(ctx)
  local issues = {}
  local facts, settings = ctx.facts, ctx.settings
  local function add(severity, check, message, remediation)
    issues[#issues + 1] = { severity = severity, check = check, message = message, remediation = remediation }
  end

  local min_disk = settings.preflight.min_disk_mb
  if not facts.disk_free_mb then
    add("error", "disk_space", "could not read free disk space", "check that df works on the worker")
  elseif facts.disk_free_mb < min_disk then
    add("error", "disk_space", ("%d MB free, %d MB required"):format(facts.disk_free_mb, min_disk),
      "free space under the worker root or lower [preflight] min_disk_mb")
  end
  if facts.root_unsafe then
    add("error", "root_ownership", facts.root_unsafe,
      "only the login user and root may write the worker root and its parents (README: Worker root ownership rule)")
  end
  if facts.manifest_sha256 and facts.target_sha256 and facts.target_sha256 ~= facts.manifest_sha256 then
    add("warning", "binary_modified", ("versions/v%s/rch-wkr does not match its manifest (sha256 %s…, manifest %s…)")
      :format(ctx.artifact.version or "?", facts.target_sha256:sub(1, 12), facts.manifest_sha256:sub(1, 12)),
      "it is replaced when its manifest names this build; rch fleet verify lists every such worker")
  end
  if not facts.writable then
    add("error", "root_writable", "the install root (or its nearest existing parent) is not writable",
      "fix ownership of the worker root")
  end

  for _, tool in ipairs({ "rsync", "zstd", "rustup" }) do
    local need = settings.preflight[tool]
    if need ~= "ignore" and not facts[tool] then
      local toolchain_needed = tool ~= "rustup" or not ctx.options.no_toolchain
      if need == "required" and toolchain_needed then
        add("error", tool, tool .. " is not installed", "install " .. tool .. " on the worker")
      elseif toolchain_needed then
        add("warning", tool, tool .. " is not installed",
          tool == "rustup" and "toolchain sync will be skipped; install rustup or pass --no-toolchain"
            or "install " .. tool .. " for faster builds")
      end
    end
  end

  local pull = ctx.artifact.pull
  if pull and pull.missing then
    add("error", "release_tarball", pull.missing, "deploy this worker with --source push, or publish that tarball")
  elseif pull and facts.fetch_reachable ~= nil then -- (nil: it holds the tarball's rch-wkr already, nothing to fetch)
    if not facts.fetch_tool then
      add("error", "fetch_tool", "neither curl nor wget is installed, so the worker cannot pull the release",
        "install curl (or wget) on the worker, or deploy it with --source push")
    elseif not facts.fetch_reachable then
      add("error", "release_url", ("the worker cannot fetch %s: %s"):format(pull.url, tostring(facts.fetch_error)),
        "let the worker reach the release mirror (DNS, proxy, firewall, CA certificates), or deploy it with --source push")
    end
    if facts.fetch_missing then
      add("error", "fetch_tool", facts.fetch_missing .. " not installed, so the worker cannot unpack the release",
        "install " .. facts.fetch_missing .. " on the worker, or deploy it with --source push")
    end
  end

  -- A guard: the engine picks the build for the worker's architecture (the release's for another one than
  -- the controller's build) and fails the worker itself when there is none.
  local worker_arch = machine_arch(facts.arch)
  if ctx.artifact.arch and worker_arch and worker_arch ~= ctx.artifact.arch then
    add("error", "architecture", ("worker is %s, the rch-wkr artifact is built for %s"):format(
      tostring(facts.arch), ctx.artifact.arch), "deploy an artifact built for " .. tostring(facts.arch))
  end

  if facts.agent_present and not facts.current_version and not facts.root_unsafe then
    add("warning", "current_version", "an rch-wkr is installed but does not report a version",
      "it will be replaced; check " .. ctx.worker.id .. " if this persists")
  end
  if facts.draining then
    add("info", "draining", "the worker is draining", "it stays drained until `rch-wkr undrain`")
  end
  return issues
end
