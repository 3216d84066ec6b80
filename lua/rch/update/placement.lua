--- Where this rch lives, for rch update: a packaged rch (owned by dpkg) is the
-- package manager's to update, and a user copy under $RCH_HOME is only used
-- when $RCH_HOME/bin comes first on PATH.
local rch = require "rch"

local M = {}

--- The Debian package that owns the running rch ("rch"), or nil when none
-- does (a user copy, a build tree, /usr/local, or no dpkg on this system).
function M.package_owner()
  local exe = rch.sys.exe_path()
  if not exe then return nil end
  local run = rch.sys.run({ "dpkg", "-S", exe }, 10)
  if not run or run.code ~= 0 then return nil end
  -- "rch: /usr/bin/rch"; a diversion line starts with "diversion by".
  for line in run.out:gmatch("[^\n]+") do
    local pkg, path = line:match("^([^:%s]+)[^:]*: (.+)$")
    if pkg and path == exe then return pkg, exe end
  end
  return nil
end

--- Why rch update must not install or roll back (a packaged rch without
-- --user-install), or nil to go ahead.
function M.refusal(opts, home)
  if opts.user_install then return nil end
  local pkg, exe = M.package_owner()
  if not pkg then return nil end
  return ("%s belongs to the Debian package %s: update it with the package manager (apt update && apt install"
    .. " %s), not rch update; or run rch update --user-install to install a separate copy for this user under %s"
    .. " (and put %s/bin first on PATH)"):format(exe, pkg, pkg, home, home)
end

local function real_path(path)
  local run = rch.sys.run({ "realpath", "-e", "--", path }, 10)
  if not run or run.code ~= 0 then return nil end
  return (run.out:gsub("\n$", ""))
end

--- A note when the rch a shell finds first on PATH is not $RCH_HOME/bin/rch
-- (so `rch` would still run another copy), or nil when it is.
function M.path_note(home)
  local want = home .. "/bin/rch"
  local want_real = real_path(want)
  local fix = ("put %s/bin first on PATH (e.g. export PATH=\"%s/bin:$PATH\" in ~/.profile)"):format(home, home)
  for dir in (os.getenv("PATH") or ""):gmatch("[^:]+") do
    local candidate = dir:gsub("/+$", "") .. "/rch"
    if rch.fs.exists(candidate) then
      if candidate == want or (want_real and real_path(candidate) == want_real) then return nil end
      return ("the rch first on PATH is %s, not the one rch update installs (%s): %s"):format(candidate, want, fix)
    end
  end
  return ("no rch on PATH; the one rch update installs is %s: %s"):format(want, fix)
end

return M
