--- rch update: check for, download, verify and install a release of rch,
-- rchd and rch-wkr under $RCH_HOME; --rollback, --verify, --dry-run, --fleet.
--
-- Install: discover (releases JSON, channels hook or --version) → confirm →
-- update.lock → download to the cache → verify (signature, checksums) →
-- extract into $RCH_HOME/.staging-* and check each binary's --version →
-- drain and stop rchd → versions/v<ver> → switch `current` (one rename) →
-- prune old versions → start rchd → unlock → [--fleet: deploy rch-wkr].
-- Exit codes: 0 done (or nothing to do), 1 the update failed or was
-- refused, 2 usage or configuration error.
local rch = require "rch"
local ui = require "rch.ui"
local release_mod = require "rch.update.release"
local download = require "rch.update.download"
local verify = require "rch.update.verify"
local install = require "rch.update.install"
local daemon = require "rch.update.daemon"
local tree = require "rch.install"
local placement = require "rch.update.placement"

local M = {}

local null = rch.json.null

-- Output for people (stdout) or, with --json, one JSON object at the end;
-- warnings and errors always go to stderr.
local function new_output(json)
  local out = { json = json }
  function out.say(text)
    -- --quiet: no step notes (a fleet deploy then prints only its summary)
    if not json and not ui.quiet then io.stdout:write(ui.paint("bold", "==> "), text, "\n") io.stdout:flush() end
    ui.log_shown("info", text, not json and not ui.quiet)
  end
  function out.print(text)
    if not json then io.stdout:write(text, "\n") end
  end
  function out.warn(text)
    io.stderr:write("rch: ", ui.paint("yellow", "warning: "), text, "\n")
    ui.log_shown("warn", text, true)
  end
  function out.result(tbl)
    if json then io.stdout:write(ui.json(tbl), "\n") end
  end
  -- Reports a failure: message on stderr, {ok=false, error} with --json.
  function out.fail(code, message, fields)
    ui.error(message)
    if json then
      local t = fields or {}
      t.ok, t.error = false, message
      out.result(t)
    end
    return code
  end
  return out
end

local function assets_json(release)
  local list = rch.json.array()
  for i, a in ipairs(release.assets) do
    list[i] = { name = a.name, size = a.size, browser_download_url = a.url }
  end
  return list
end

local function show_notes(out, release, notes)
  if out.json or notes == "" then return end
  out.print(ui.paint("bold", ("Release notes for rch %s:"):format(release.version)))
  for line in (notes:gsub("%s+$", "") .. "\n"):gmatch("([^\n]*)\n") do out.print("  " .. line) end
  out.print("")
end

-- y/N on a terminal; refused without one unless --yes.
local function confirm(question, opts)
  if opts.yes then return true end
  if not rch.sys.isatty(0) then
    return nil, ("no terminal to ask \"%s\": pass --yes to go ahead without confirmation"):format(question)
  end
  io.stderr:write(question, " [y/N] ")
  io.stderr:flush()
  local answer = io.stdin:read("*l")
  if answer and answer:match("^%s*[yY]") then return true end
  return nil, "cancelled: nothing was changed"
end

local function lock_path() return rch.config.paths().data_dir .. "/update.lock" end

-- Runs `rch fleet deploy --version <ver> [--source S]` with the configured defaults.
local function fleet_deploy(version, settings, out, source)
  local deploy = require "rch.commands.deploy"
  local engine = require "rch.deploy.engine"
  out.say(("deploying rch-wkr %s to the fleet"):format(version))
  local job, err, code = engine.prepare({
    worker = rch.json.array(), parallel = settings.defaults.parallel, canary_wait = settings.canary.wait,
    no_toolchain = false, force = false, verify = false, drain_first = false, drain_timeout = 120,
    dry_run = false, resume = false, json = false, version = version, audit_log = "", source = source,
    strategy = "", rolling_batch = 0, rolling_wait = 0, max_fail_percent = 0,
  }, { silent = out.json })
  if not job then
    ui.error(err)
    return code
  end
  local result, d, written = engine.execute(job)
  if not result then -- it could not start: d is the error, written the exit code
    ui.error(d)
    return written
  end
  if not out.json then deploy.render(result, d.workers, job.options) end
  return (result.outcome == "completed" and written) and 0 or 1, result
end

local function fleet_dry_run(version, out)
  local workers = require("rch.workers").select({})
  local n = workers and #workers or 0
  out.print(("Would deploy rch-wkr %s to %d worker%s (rch fleet deploy --version %s)"):format(version, n,
    n == 1 and "" or "s", version))
  return { version = version, workers = n }
end

-- Discovery shared by --check and install: the release list and the pick.
local function discover(opts, settings, out)
  local url = release_mod.source_url(settings)
  local list, err = release_mod.fetch(url, settings)
  if not list then return nil, err end
  local release
  release, err = release_mod.pick(list, { version = opts.version, channel = opts.channel,
    current_version = rch.version.current() })
  if not release then return nil, err end
  rch.log.debug(("%s: picked %s (%d releases listed)"):format(url, release.tag, #list))
  rch.log.info(("update check: current version %s, latest %s %s"):format(rch.version.current(), release.version,
    opts.version ~= "" and "(pinned)" or ("(" .. opts.channel .. " channel)")))
  out.url = url
  return release
end

-- ---------------------------------------------------------------- --check

local function run_check(opts, settings, out)
  local release, err = discover(opts, settings, out)
  if not release then return out.fail(1, err) end
  local current = rch.version.current()
  local available = rch.version.compare(release.version, current) > 0
  local notes = release_mod.notes(release, settings)
  local home = rch.config.paths().home
  out.result({
    ok = true, current_version = current, latest_version = release.version, update_available = available,
    release_url = release.html_url or out.url, release_notes = notes, assets = assets_json(release),
    channel = (opts.version ~= "" and null) or opts.channel, prerelease = release.prerelease,
    installed_version = install.current_version(home) or null,
  })
  out.print(("Current version: %s"):format(current))
  out.print(("Latest version:  %s%s"):format(release.version,
    opts.version ~= "" and " (pinned)" or (" (" .. opts.channel .. " channel)")))
  if available then
    out.print(ui.paint("green", ("Update available: %s -> %s"):format(current, release.version))
      .. "  (run `rch update` to install)")
  else
    out.print("No update available: rch is up to date")
  end
  if not out.json and notes ~= "" then out.print("") end
  show_notes(out, release, notes)
  return 0
end

-- ---------------------------------------------------------------- --verify

local function run_verify(out)
  local home = rch.config.paths().home
  local report = install.verify(home)
  -- An rchd left running the old version (update --no-restart) is part of the installation too.
  local st = daemon.status(home)
  if st and st.running and report.current_version and st.version ~= report.current_version then
    report.findings[#report.findings + 1] = ("rchd (pid %d) still runs %s while %s is installed: restart it (stop it,"
      .. " then %s/bin/rchd run)"):format(st.pid, tostring(st.version), report.current_version, home)
  end
  local ok = #report.findings == 0
  local files = rch.json.array()
  for i, f in ipairs(report.files) do
    files[i] = { name = f.name, ok = f.ok, expected_sha256 = f.expected or null, actual_sha256 = f.actual or null }
  end
  out.result({ ok = ok, home = home, current_version = report.current_version or null,
    findings = rch.json.array(report.findings), files = files })
  if out.json then return ok and 0 or 1 end
  for _, f in ipairs(report.files) do
    out.print(("%s %s"):format(f.ok and ui.paint("green", "ok ") or ui.paint("red", "BAD"), f.name))
  end
  for _, finding in ipairs(report.findings) do ui.error(finding) end
  if ok then
    out.print(("rch %s in %s: every binary matches its manifest and the links are intact"):format(
      report.current_version, home))
    return 0
  end
  out.print(ui.paint("red", ("%d problem%s found in %s"):format(#report.findings, #report.findings == 1 and "" or "s",
    home)))
  return 1
end

-- ------------------------------------------------------ shared install tail

-- Stops rchd unless --no-restart. Returns the daemon report.
local function stop_daemon(home, opts, out)
  if opts.no_restart then
    local st = daemon.status(home)
    return { was_running = st and st.running or false, pid = st and st.pid or 0, left_running = true }
  end
  local interrupted = daemon.stopped_by_interrupted_update(home)
  local st = daemon.status(home)
  local running = st and st.running or false
  if running and not interrupted then
    -- Recorded before rchd is stopped, so that a run killed from here on
    -- leaves the next run a note to start it again.
    local state = install.read_state(home)
    state.rchd_stopped = true
    local ok, err = install.write_state(home, state)
    if not ok then return nil, err end
  end
  local report, err = daemon.stop(home, { drain_timeout = opts.drain_timeout, say = out.say, warn = out.warn })
  if not report then
    if running and not interrupted then
      local state = install.read_state(home)
      state.rchd_stopped = nil
      install.write_state(home, state)
    end
    return nil, err
  end
  report.restart = report.was_running or interrupted
  return report
end

-- Starts rchd again if stop_daemon stopped it (or an interrupted run did).
local function restart_daemon(home, report, version, out)
  if not report.restart then return true end
  local st, err = daemon.start(home, version, report.unit)
  if not st then return nil, err end
  report.restarted, report.new_pid, report.new_version = true, st.pid, st.version
  local state = install.read_state(home)
  state.rchd_stopped = nil
  install.write_state(home, state)
  out.say(("started rchd %s (pid %d)"):format(st.version, st.pid))
  return true
end

local function daemon_json(report)
  if not report then return null end
  return {
    was_running = report.was_running, pid = report.pid ~= 0 and report.pid or null,
    active_builds = report.active_builds or 0, remaining_builds = report.remaining_builds or 0,
    restarted = report.restarted or false, new_pid = report.new_pid or null, new_version = report.new_version or null,
    left_running = report.left_running or false,
  }
end

-- ---------------------------------------------------------------- install

local install_locked -- defined below run_install

-- Nothing to install here; --fleet still deploys the version to the workers.
local function up_to_date(target, opts, settings, out, base)
  base.ok, base.status = true, "up_to_date"
  if opts.fleet and not opts.dry_run then
    local code, result = fleet_deploy(target, settings, out, opts.source)
    base.ok, base.fleet = code == 0, { exit_code = code, result = result or null }
    out.result(base)
    return code
  end
  base.dry_run = opts.dry_run or false
  out.result(base)
  return 0
end

-- update --dry-run: every step the install would take, nothing changed.
local function dry_run_install(found, target, installed, opts, settings, out, base)
  local home = rch.config.paths().home
  local downloads = rch.json.array()
  for _, a in ipairs(release_mod.downloads(found)) do
    downloads[#downloads + 1] = { url = a.url, size = a.size }
    out.print(("Would download %s (%s)"):format(a.url, download.human_size(a.size)))
  end
  local dir = install.version_dir(home, target)
  out.print(("Would verify %s against %s and checksums.txt%s"):format(found.tarball.name, found.sha256.name,
    settings.update.minisign_pubkey ~= "" and ", and its signature with update.minisign_pubkey"
      or " (no signature: update.minisign_pubkey is not set)"))
  out.print(("Would install rch, rchd, rch-wkr %s into %s"):format(target, dir))
  out.print(("Would switch %s/current: %s -> versions/v%s"):format(home,
    installed and ("versions/v" .. installed) or "(none)", target))
  local dstatus = daemon.status(home)
  local drun = dstatus and dstatus.running
  if drun and not opts.no_restart then
    out.print(("Would drain rchd (pid %d, %d active build%s; up to %ds), stop it and start rchd %s"):format(
      dstatus.pid, dstatus.active_builds, dstatus.active_builds == 1 and "" or "s", opts.drain_timeout, target))
  elseif drun then
    out.print(("Would leave rchd (pid %d) running %s (--no-restart)"):format(dstatus.pid, dstatus.version))
  end
  local fleet
  if opts.fleet then fleet = fleet_dry_run(target, out) end
  out.print(("Dry run: %s %s -> %s; nothing was changed."):format(base.action, base.from_version, target))
  base.ok, base.dry_run, base.downloads, base.install_dir = true, true, downloads, dir
  base.switch = { from = installed and ("versions/v" .. installed) or null, to = "versions/v" .. target }
  base.daemon = { running = drun or false, pid = drun and dstatus.pid or null,
    active_builds = drun and dstatus.active_builds or 0 }
  base.fleet = fleet or null
  out.result(base)
  return 0
end

local function run_install(opts, settings, out)
  local paths = rch.config.paths()
  local home = paths.home
  local release, err = discover(opts, settings, out)
  if not release then return out.fail(1, err) end
  local found
  found, err = release_mod.assets(release)
  if not found then return out.fail(1, err) end
  local target = release.version
  local running = rch.version.current()
  local installed = install.current_version(home)
  local from = installed or running
  local cmp = rch.version.compare(target, from)
  local pinned = opts.version ~= ""
  -- Same version: a reinstall only with --force; otherwise nothing is installed ("none").
  local action = cmp > 0 and "upgrade" or (cmp < 0 and "downgrade" or (opts.force and "reinstall" or "none"))
  local base = { from_version = from, to_version = target, action = action, release_url = release.html_url or out.url }

  if cmp == 0 and not opts.force then
    out.print(("rch %s is already up to date (%s); --force reinstalls it"):format(from,
      pinned and "the pinned version" or ("newest " .. opts.channel .. " release")))
    return up_to_date(target, opts, settings, out, base)
  end
  if cmp < 0 and not pinned then
    return out.fail(1, ("rch %s is newer than the newest %s release %s: not downgrading (pass --version %s to"
      .. " downgrade)"):format(from, opts.channel, target, target), base)
  end
  if opts.dry_run then return dry_run_install(found, target, installed, opts, settings, out, base) end

  local notes = release_mod.notes(release, settings)
  base.release_notes = notes
  show_notes(out, release, notes)
  local yes
  yes, err = confirm(("Install rch %s?"):format(target), opts)
  if not yes then return out.fail(1, err, base) end

  local lock, held
  lock, err, held = rch.store.lock(lock_path(), ("rch update to %s"):format(target))
  if not lock then return out.fail(1, held and "another update is running: " .. err or err, base) end
  local code = install_locked(release, found, opts, settings, out, base, home)
  lock:release()
  if code == 0 then
    local note = placement.path_note(home)
    if note then out.warn(note) end
  end
  if code ~= 0 or not opts.fleet then return code end
  local fcode, result = fleet_deploy(target, settings, out, opts.source)
  base.fleet = { exit_code = fcode, result = result or null }
  base.ok = fcode == 0
  out.result(base)
  return fcode
end

-- Downloads the release tarball (or reuses the cached copy) and checks its
-- signature and checksums before anything is unpacked.
-- @return fetched, sha256, signature ("verified"|"unsigned") | nil, err
local function fetch_verified(release, found, settings, out, base)
  out.say(("downloading rch %s (%s)"):format(release.version, download.human_size(found.tarball.size)))
  local fetched, err = download.fetch(release, found, {
    settings = settings, tty = ui.stdout_tty and not out.json and not ui.quiet,
    expected_sha256 = function(text) return (verify.sha256_for(text, found.tarball.name, found.sha256.name)) end,
  })
  if not fetched then return nil, err end
  if fetched.reused then out.say(("using %s, downloaded earlier"):format(fetched.tarball)) end
  base.tarball = { url = found.tarball.url, size = found.tarball.size, path = fetched.tarball, cached = fetched.reused or false }

  local signature, details = verify.signature(release, fetched, settings.update.minisign_pubkey)
  if not signature then
    download.discard(fetched)
    return nil, details
  end
  local sha
  sha, err = verify.checksums(release, found, fetched)
  if not sha then
    download.discard(fetched)
    return nil, err
  end
  base.tarball.sha256, base.signature = sha, signature
  if signature == "verified" then
    base.signature_key_id = details.key_id
    out.say(("verified %s: sha256 matches %s and checksums.txt, signed by key %s (\"%s\")"):format(found.tarball.name,
      found.sha256.name, details.key_id, details.trusted_comment))
  else
    out.warn(("update.minisign_pubkey is not configured: only checksums were verified for %s (no signature check%s)")
      :format(found.tarball.name, #details.unchecked > 0
        and ("; %s present but not checked"):format(table.concat(details.unchecked, " and ")) or ""))
    out.say(("verified %s: sha256 matches %s and checksums.txt"):format(found.tarball.name, found.sha256.name))
  end
  return fetched, sha, signature
end

-- Starts the new rchd; when it does not run, switches back to the version that did.
-- @return true | nil, message
local function restart_or_switch_back(home, dreport, target, previous, state, out)
  local ok, err = restart_daemon(home, dreport, target, out)
  if ok then return true end
  local message = ("rch %s was installed but its rchd did not start: %s"):format(target, err)
  if not previous or previous == target then return nil, message end
  local bok, berr = install.switch(home, previous)
  if not bok then
    return nil, message .. "; switching back to " .. previous .. " failed too: " .. berr
      .. ("; roll back by hand with rch update --rollback (to %s)"):format(previous)
  end
  state.current, state.previous = previous, target
  install.write_state(home, state)
  message = message .. ("; switched back to %s"):format(previous)
  local rok, rerr = restart_daemon(home, dreport, previous, out)
  if not rok then message = message .. " (and its rchd did not start either: " .. rerr .. ")" end
  return nil, message
end

-- After a successful switch: prune old versions, report. @return 0
local function installed(home, target, previous, state, settings, opts, out, base)
  local pruned, err = install.prune(home, settings.update.keep, target, state.previous)
  if not pruned then
    out.warn("could not remove old versions: " .. err)
    pruned = {}
  end
  for _, v in ipairs(pruned) do out.say(("removed old version %s (keep = %d)"):format(v, settings.update.keep)) end
  base.ok, base.status = true, "installed"
  base.previous_version = previous or null
  base.install_dir = install.version_dir(home, target)
  base.removed_versions = rch.json.array(pruned)
  out.print(ui.paint("green", ("rch %s installed"):format(target)) ..
    (previous and previous ~= target and (" (was %s; `rch update --rollback` goes back)"):format(previous) or ""))
  if not opts.fleet then out.result(base) end
  return 0
end

-- The part of an install that runs under update.lock. Returns the exit code;
-- prints the JSON result itself unless --fleet still has to run.
install_locked = function(release, found, opts, settings, out, base, home)
  local target = release.version
  local removed, err = install.cleanup_staging(home)
  if not removed then return out.fail(1, err, base) end
  for _, path in ipairs(removed) do rch.log.info("removed " .. path .. " left by an interrupted update") end
  local fetched, sha, signature = fetch_verified(release, found, settings, out, base)
  if not fetched then return out.fail(1, sha, base) end
  local staging
  staging, err = install.stage(home, { version = target, tarball = fetched.tarball, tarball_sha256 = sha,
    source_url = found.tarball.url, signature = signature })
  if not staging then
    download.discard(fetched)
    return out.fail(1, err, base)
  end

  local dreport
  dreport, err = stop_daemon(home, opts, out)
  if not dreport then
    tree.remove_tree(staging)
    return out.fail(1, err .. "; nothing was installed", base)
  end
  base.daemon = dreport

  local previous = install.current_version(home)
  local ok
  ok, err = install.place(home, staging, target)
  if ok then ok, err = install.switch(home, target) end
  if not ok then
    tree.remove_tree(staging)
    local failure = ("installing %s failed: %s; %s"):format(install.version_dir(home, target), err,
      previous and ("rch %s stays current, nothing to roll back; retry with rch update --version %s"):format(previous,
        target) or "nothing was switched; retry with rch update --version " .. target)
    local rok, rerr = restart_daemon(home, dreport, nil, out)
    if not rok then failure = failure .. "; and rchd did not start again: " .. rerr end
    base.daemon = daemon_json(dreport)
    return out.fail(1, failure, base)
  end
  out.say(("installed rch %s: %s/current -> versions/v%s%s"):format(target, home, target,
    previous and previous ~= target and (" (backup: versions/v%s, for rch update --rollback)"):format(previous) or ""))

  local state = install.read_state(home)
  state.current = target
  if previous and previous ~= target then state.previous = previous end
  install.write_state(home, state)

  ok, err = restart_or_switch_back(home, dreport, target, previous, state, out)
  if not ok then
    base.daemon = daemon_json(dreport)
    return out.fail(1, err, base)
  end
  if dreport.left_running and dreport.was_running then
    out.warn(("rchd (pid %d) still runs the previous version (--no-restart): restart it to use %s"):format(
      dreport.pid, target))
  end

  base.daemon = daemon_json(dreport)
  return installed(home, target, previous, state, settings, opts, out, base)
end

-- ---------------------------------------------------------------- --rollback

local rollback_locked -- defined below run_rollback

local function run_rollback(opts, settings, out)
  local home = rch.config.paths().home
  local target, current = install.rollback_target(home)
  if not target then return out.fail(1, current) end
  local base = { action = "rollback", from_version = current, to_version = target }
  local dir = install.version_dir(home, target)
  for _, name in ipairs(install.BINARIES) do
    local ok, err = install.check_binary(dir .. "/" .. name, name, target)
    if not ok then return out.fail(1, ("cannot roll back to %s: %s"):format(target, err), base) end
  end
  if opts.dry_run then
    local dstatus = daemon.status(home)
    out.print(("Would switch %s/current: versions/v%s -> versions/v%s"):format(home, current, target))
    if dstatus and dstatus.running and not opts.no_restart then
      out.print(("Would drain rchd (pid %d), stop it and start rchd %s"):format(dstatus.pid, target))
    end
    local fleet
    if opts.fleet then fleet = fleet_dry_run(target, out) end
    out.print(("Dry run: rollback %s -> %s; nothing was changed."):format(current, target))
    base.ok, base.dry_run, base.fleet = true, true, fleet or null
    out.result(base)
    return 0
  end
  local yes, err = confirm(("Roll back rch %s to %s?"):format(current, target), opts)
  if not yes then return out.fail(1, err, base) end
  local lock, held
  lock, err, held = rch.store.lock(lock_path(), ("rch update --rollback to %s"):format(target))
  if not lock then return out.fail(1, held and "another update is running: " .. err or err, base) end
  local code = rollback_locked(home, target, current, opts, out, base)
  lock:release()
  if code ~= 0 then return code end
  out.print(ui.paint("green", ("rolled back rch %s -> %s"):format(current, target)))
  base.ok = true
  if opts.fleet then
    local result
    code, result = fleet_deploy(target, settings, out, opts.source)
    base.fleet = { exit_code = code, result = result or null }
    base.ok = code == 0
  end
  out.result(base)
  return code
end

-- The switch back under update.lock: drain and stop rchd, switch current,
-- start rchd again. @return exit code (the failure already reported)
rollback_locked = function(home, target, current, opts, out, base)
  local removed, err = install.cleanup_staging(home)
  if not removed then return out.fail(1, err, base) end
  local dreport
  dreport, err = stop_daemon(home, opts, out)
  if not dreport then return out.fail(1, err .. "; nothing was changed", base) end
  local ok
  ok, err = install.switch(home, target)
  if not ok then
    local message = "rollback failed: " .. err
    local rok, rerr = restart_daemon(home, dreport, nil, out)
    if not rok then message = message .. "; and rchd did not start again: " .. rerr end
    base.daemon = daemon_json(dreport)
    return out.fail(1, message, base)
  end
  local state = install.read_state(home)
  state.current, state.previous = target, current
  install.write_state(home, state)
  out.say(("switched %s/current -> versions/v%s"):format(home, target))
  ok, err = restart_daemon(home, dreport, target, out)
  base.daemon = daemon_json(dreport)
  if not ok then return out.fail(1, ("rolled back to %s but rchd did not start: %s"):format(target, err), base) end
  return 0
end

--- @param opts {check, version, channel, fleet, source (with --fleet: push | pull | "" = [deploy] source),
--   rollback, verify, yes, dry_run, no_restart, drain_timeout, force, json}
-- @return exit code
function M.run(opts)
  local out = new_output(opts.json)
  local modes = {}
  for _, m in ipairs({ "check", "rollback", "verify" }) do
    if opts[m] then modes[#modes + 1] = "--" .. m:gsub("_", "-") end
  end
  if #modes > 1 then return out.fail(2, table.concat(modes, " and ") .. " cannot be combined") end
  opts.version = opts.version or ""
  if opts.rollback and opts.version ~= "" then
    return out.fail(2, "--rollback goes back to the previous version; to install a given one use --version alone")
  end
  opts.drain_timeout = tonumber(opts.drain_timeout) or 60

  local settings, err = rch.config.settings()
  if not settings then return out.fail(2, err) end
  if not opts.channel or opts.channel == "" then opts.channel = settings.update.channel end
  local key = settings.update.minisign_pubkey
  if key ~= "" then
    local ok, kerr = rch.crypto.minisign_key_id(key)
    if not ok then return out.fail(2, "config.toml [update] minisign_pubkey: " .. kerr) end
  end

  if opts.verify then return run_verify(out) end
  if opts.check then return run_check(opts, settings, out) end
  -- Installing and rolling back are the package manager's when a package owns this rch.
  local refusal = placement.refusal(opts, rch.config.paths().home)
  if refusal then return out.fail(1, refusal) end
  if opts.rollback then return run_rollback(opts, settings, out) end
  return run_install(opts, settings, out)
end

return M
