--- The rch-wkr binary a deployment ships: where it comes from, its sha256,
-- size and ELF architecture, and a local `--version` check.
local rch = require "rch"
local sys = require "rch.sys"

local M = {}

local ELF_MACHINES = { [3] = "x86", [40] = "arm", [62] = "x86_64", [183] = "aarch64", [243] = "riscv64" }

--- The architecture an ELF file is built for ("x86_64", …), or nil, err.
function M.elf_arch(path)
  local head, err = sys.read_head(path, 20)
  if not head then return nil, err end
  if #head < 20 or head:sub(1, 4) ~= "\127ELF" then return nil, path .. " is not an ELF executable" end
  local machine
  if head:byte(6) == 1 then
    machine = head:byte(19) + head:byte(20) * 256
  else
    machine = head:byte(19) * 256 + head:byte(20)
  end
  return ELF_MACHINES[machine] or ("elf-machine-" .. machine)
end

-- `uname -m` spellings -> the names elf_arch gives.
M.ARCH_ALIASES = {
  x86_64 = "x86_64", amd64 = "x86_64",
  aarch64 = "aarch64", arm64 = "aarch64",
  armv7l = "arm", armv6l = "arm",
  i686 = "x86", i386 = "x86",
  riscv64 = "riscv64",
}

--- The architecture a worker's `uname -m` names, as elf_arch spells it (nil for nil).
function M.machine_arch(machine)
  if not machine or machine == "" then return nil end
  return M.ARCH_ALIASES[machine] or machine
end

local function dirname(path)
  return path:match("^(.*)/[^/]*$") or "."
end

--- Checks the rch-wkr at `path` for `version`: its ELF architecture, the
-- version it reports when it runs here (a foreign build that cannot run is
-- taken as it is), its sha256 and size.
-- @return {path, version, sha256, size, arch}, or nil, err
function M.inspect(path, target)
  local arch, err = M.elf_arch(path)
  if not arch then return nil, err end
  -- The binary must say it is the version we are about to record everywhere.
  local run = sys.run({ path, "--version" }, 10)
  if run and run.code == 0 then
    local reported = rch.version.extract(run.out)
    if reported ~= target then
      return nil, ("%s reports version %s, expected %s"):format(path, tostring(reported), target)
    end
  elseif arch == M.elf_arch(sys.exe_path()) then
    -- Built for this machine yet it does not run: broken, not foreign.
    return nil, ("%s --version failed: %s"):format(path, run and run.err or "cannot run")
  end
  local sha256
  sha256, err = rch.crypto.sha256_file(path)
  if not sha256 then return nil, err end
  return { path = path, version = target, sha256 = sha256, size = assert(rch.fs.size(path)), arch = arch }
end

--- Finds and checks the artifact for `version` (default: this rch's version).
-- Looked up in $RCH_HOME/versions/v<ver>/rch-wkr, then, for rch's own
-- version, next to the running rch.
-- @return {path, version, sha256, size, arch}, or nil, err
function M.resolve(version)
  local own = rch.version.current()
  local target = own
  if version and version ~= "" then
    local parsed, err = rch.version.parse(version)
    if not parsed then return nil, ("--version %s: %s"):format(version, err) end
    target = parsed
  end
  local paths = rch.config.paths()
  local candidates = { paths.home .. "/versions/v" .. target .. "/rch-wkr" }
  if target == own then
    local exe = sys.exe_path()
    if exe then candidates[#candidates + 1] = dirname(exe) .. "/rch-wkr" end
  end
  local path
  for _, c in ipairs(candidates) do
    if rch.fs.exists(c) then
      path = c
      break
    end
  end
  if not path then
    return nil, ("no rch-wkr %s to deploy: looked for %s (install it with `rch update --version %s`)")
      :format(target, table.concat(candidates, " and "), target)
  end
  return M.inspect(path, target)
end

return M
