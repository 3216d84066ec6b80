--- The remote side of each deploy step. Every command is a constant POSIX sh
-- script run as `sh -c SCRIPT sh ARG…`: values (paths, versions, hashes)
-- travel only as quoted arguments, never as script text. A worker's output
-- is data: capped by the session (max_output), clipped in messages.
local util = require "rch.util"

local M = {}

local function script(text, ...)
  local argv = { "sh", "-c", text, "sh" }
  for _, v in ipairs({ ... }) do argv[#argv + 1] = tostring(v) end
  return argv
end
M.script = script

--- What the output cap cut from an exec result: " (stdout truncated at 1 MiB)", or "".
function M.truncation(r)
  local cut = {}
  if r.out_truncated then cut[#cut + 1] = "stdout" end
  if r.err_truncated then cut[#cut + 1] = "stderr" end
  if #cut == 0 then return "" end
  return (" (%s truncated at %s)"):format(table.concat(cut, " and "), util.bytes_text(r.max_output or 0))
end

--- One readable line for a command that did not succeed: "WHAT failed (exit N): stderr"
-- (clipped) or "WHAT timed out after N s", and what the cap cut.
function M.failure(what, r, timeout)
  if r.timed_out then return ("%s timed out after %s s%s"):format(what, tostring(timeout), M.truncation(r)) end
  local err = util.clip(util.chomp(r.err))
  return ("%s failed (exit %d)%s%s"):format(what, r.code, err ~= "" and ": " .. err or "", M.truncation(r))
end

--- Parses "key=value" lines into a table; a value is at most 4 KiB (a path's limit).
local function parse_facts(out)
  local facts = {}
  for line in out:gmatch("[^\n]+") do
    local k, v = line:match("^([%w_]+)=(.*)$")
    if k then facts[k] = util.clip(v, 4096) end
  end
  return facts
end

-- sha256 of stdin as bare hex. openssl when the worker has it: measured
-- ~850 MB/s against ~190 MB/s for coreutils sha256sum on the testbed, and the
-- upload waits on this hash (docs/performance.md).
local HASH = [[
if command -v openssl >/dev/null 2>&1; then
  sha256_hex() { openssl dgst -sha256 -r | cut -d' ' -f1; }
else
  sha256_hex() { sha256sum | cut -d' ' -f1; }
fi
]]

-- Read-only: preflight and dry run must leave the worker byte-identical.
-- With trust_manifest=1, the sha256 of a target that `current` already points
-- at comes from the manifest written at install instead of re-reading 15 MB
-- on every redeploy; --force passes 0 and hashes the file for real.
local PREFLIGHT = HASH .. [[
root=$1; target=$2; trust_manifest=$3
echo "arch=$(uname -m)"
d=$root
while [ ! -d "$d" ]; do d=$(dirname "$d"); done
echo "disk_free_mb=$(df -Pm "$d" | awk 'NR==2 {print $4}')"
if [ -w "$d" ]; then echo writable=1; else echo writable=0; fi
for t in rsync zstd; do
  if command -v "$t" >/dev/null 2>&1; then echo "$t=1"; else echo "$t=0"; fi
done
if command -v rustup >/dev/null 2>&1 || [ -x "$HOME/.cargo/bin/rustup" ]; then echo rustup=1; else echo rustup=0; fi
if [ -e "$root/bin/rch-wkr" ] || [ -L "$root/bin/rch-wkr" ]; then
  echo "agent_present=1"
  v=$("$root/bin/rch-wkr" --version 2>/dev/null | head -n 1) && echo "current_version=$v"
fi
if [ -L "$root/current" ]; then echo "current_link=$(readlink "$root/current")"; fi
if [ -d "$root/versions" ]; then echo "versions=$(ls -1 "$root/versions" | tr '\n' ' ')"; fi
f="$root/versions/v$target/rch-wkr"
m="$root/versions/v$target/manifest.json"
if [ -f "$f" ]; then
  h=""
  if [ "$trust_manifest" = 1 ] && [ "$(readlink "$root/current" 2>/dev/null)" = "versions/v$target" ] && [ -f "$m" ]; then
    h=$(sed -n 's/.*"sha256":"\([0-9a-f]\{64\}\)".*/\1/p' "$m")
  fi
  [ -n "$h" ] || h=$(sha256_hex < "$f")
  echo "target_sha256=$h"
fi
if [ -e "$root/state/drain" ]; then echo draining=1; fi
]]

--- Gathers the facts preflight checks and dry run predictions are made of.
-- @return facts table, or nil, err
function M.preflight(session, root, target_version, timeout, trust_manifest)
  local r, err = session:exec(script(PREFLIGHT, root, target_version, trust_manifest == false and 0 or 1),
    { timeout = timeout })
  if not r then return nil, err end
  if r.code ~= 0 or r.timed_out then return nil, M.failure("preflight probe", r, timeout) end
  -- Facts cut short cannot be trusted (a missing line reads as a missing tool or agent).
  if r.out_truncated then return nil, "preflight probe printed too much" .. M.truncation(r) end
  local facts = parse_facts(r.out)
  facts.disk_free_mb = tonumber(facts.disk_free_mb)
  for _, k in ipairs({ "writable", "rsync", "zstd", "rustup", "agent_present", "draining" }) do
    facts[k] = facts[k] == "1"
  end
  if facts.current_version then
    facts.current_version = require("rch.version").extract(facts.current_version)
  end
  return facts
end

-- The upload lands in a temp name inside the version dir, is hashed while it
-- arrives (tee into the hash), and is renamed only if the hash matches.
local TRANSFER = HASH .. [[
set -e
dir=$1; want=$2
mkdir -p "$dir"
rm -f "$dir"/.rch-wkr.part.*  # left by an upload whose connection died before its trap ran
tmp="$dir/.rch-wkr.part.$$"
trap 'rm -f "$tmp"' EXIT
got=$(tee "$tmp" | sha256_hex)
if [ "$got" != "$want" ]; then
  echo "sha256 mismatch on the worker: received $got, expected $want" >&2
  exit 3
fi
chmod 755 "$tmp"
sync "$tmp" 2>/dev/null || true
mv -f "$tmp" "$dir/rch-wkr"
trap - EXIT
echo "sha256=$got"
]]

--- Uploads the artifact into <root>/versions/v<ver>/rch-wkr.
function M.transfer(session, root, version, artifact, timeout)
  local dir = root .. "/versions/v" .. version
  local r, err = session:upload(artifact.path, script(TRANSFER, dir, artifact.sha256), { timeout = timeout })
  if not r then return nil, err end
  if r.code ~= 0 or r.timed_out then return nil, M.failure("transfer", r, timeout) end
  return true
end

-- A file anywhere on the worker (rch run scripts): same temp-name, hash-on-arrival, rename.
local PUT = HASH .. [[
set -e
dest=$1; want=$2
mkdir -p "$(dirname "$dest")"
tmp="$dest.rch-part.$$"
trap 'rm -f "$tmp"' EXIT
got=$(tee "$tmp" | sha256_hex)
if [ "$got" != "$want" ]; then
  echo "sha256 mismatch on the worker: received $got, expected $want" >&2
  exit 3
fi
mv -f "$tmp" "$dest"
trap - EXIT
]]

function M.put(session, local_path, dest, sha256, timeout)
  local r, err = session:upload(local_path, script(PUT, dest, sha256), { timeout = timeout })
  if not r then return nil, err end
  if r.code ~= 0 or r.timed_out then return nil, M.failure("upload to " .. dest, r, timeout) end
  return true
end

-- Switches `current` with one rename; bin/rch-wkr -> ../current/rch-wkr is
-- created once the same way, so it never points at a missing or partial file.
local INSTALL = [[
set -e
root=$1; ver=$2; sha=$3; dep=$4; now=$5
dir="$root/versions/v$ver"
# The binary's sha256 was checked as it arrived (transfer) or by preflight
# (already present), so it is not hashed a third time here.
[ -x "$dir/rch-wkr" ] || { echo "missing $dir/rch-wkr" >&2; exit 3; }
printf '{"version":"%s","sha256":"%s","deployment_id":"%s","installed_at":"%s"}\n' \
  "$ver" "$sha" "$dep" "$now" > "$dir/.manifest.json.tmp"
mv -f "$dir/.manifest.json.tmp" "$dir/manifest.json"
mkdir -p "$root/bin"
ln -sfn "versions/v$ver" "$root/.current.new"
mv -Tf "$root/.current.new" "$root/current"
if [ "$(readlink "$root/bin/rch-wkr" 2>/dev/null)" != "../current/rch-wkr" ]; then
  ln -sfn ../current/rch-wkr "$root/bin/.rch-wkr.new"
  mv -Tf "$root/bin/.rch-wkr.new" "$root/bin/rch-wkr"
fi
]]

function M.install(session, root, version, sha256, deployment_id, now, timeout)
  local r, err = session:exec(script(INSTALL, root, version, sha256, deployment_id, now), { timeout = timeout })
  if not r then return nil, err end
  if r.code ~= 0 or r.timed_out then return nil, M.failure("install", r, timeout) end
  return true
end

-- Back to the previous `current` target, or to no agent at all when there was none.
local ROLLBACK = [[
set -e
root=$1; prev=$2
if [ -z "$prev" ]; then
  rm -f "$root/bin/rch-wkr" "$root/current"
  exit 0
fi
[ -x "$root/$prev/rch-wkr" ] || { echo "previous version $root/$prev is gone" >&2; exit 3; }
ln -sfn "$prev" "$root/.current.new"
mv -Tf "$root/.current.new" "$root/current"
]]

function M.rollback(session, root, previous_link, timeout)
  local r, err = session:exec(script(ROLLBACK, root, previous_link or ""), { timeout = timeout })
  if not r then return nil, err end
  if r.code ~= 0 or r.timed_out then return nil, M.failure("rollback", r, timeout) end
  return true
end

--- `rch-wkr drain --timeout S` on the worker (only when an agent is installed).
function M.drain(session, root, timeout_s)
  local r, err = session:exec({ root .. "/bin/rch-wkr", "drain", "--timeout", tostring(timeout_s) },
    { timeout = timeout_s + 30 })
  if not r then return nil, err end
  if r.code == 3 and not r.timed_out then
    return nil, "drain timed out: " .. util.clip(util.chomp(r.err)) .. M.truncation(r)
  end
  if r.code ~= 0 or r.timed_out then return nil, M.failure("rch-wkr drain", r, timeout_s + 30) end
  return true
end

function M.undrain(session, root, timeout)
  local r, err = session:exec({ root .. "/bin/rch-wkr", "undrain" }, { timeout = timeout })
  if not r then return nil, err end
  if r.code ~= 0 or r.timed_out then return nil, M.failure("rch-wkr undrain", r, timeout) end
  return true
end

local TOOLCHAIN = [[
tc=$1
if command -v rustup >/dev/null 2>&1; then r=rustup; else r="$HOME/.cargo/bin/rustup"; fi
exec "$r" toolchain install "$tc" --profile minimal
]]

function M.toolchain(session, toolchain, timeout)
  local r, err = session:exec(script(TOOLCHAIN, toolchain), { timeout = timeout })
  if not r then return nil, err end
  if r.code ~= 0 or r.timed_out then return nil, M.failure("rustup toolchain install " .. toolchain, r, timeout) end
  return true
end

-- Read-only: what `rch fleet verify` checks, in one command.
local INSPECT = HASH .. [[
root=$1
link=$(readlink "$root/current" 2>/dev/null) || link=""
echo "current_link=$link"
bin=$(readlink "$root/bin/rch-wkr" 2>/dev/null) || bin=""
echo "bin_link=$bin"
if [ -n "$link" ] && [ -f "$root/$link/rch-wkr" ]; then
  echo "binary_sha256=$(sha256_hex < "$root/$link/rch-wkr")"
  if [ -f "$root/$link/manifest.json" ]; then echo "manifest=$(head -n 1 "$root/$link/manifest.json")"; fi
fi
if [ -x "$root/bin/rch-wkr" ]; then echo "health=$("$root/bin/rch-wkr" health --json 2>/dev/null | head -n 1)"; fi
]]

--- Facts for verification: links, the current binary's sha256, its manifest
-- (decoded) and the agent's health (decoded). @return facts, or nil, err
function M.inspect(session, root, timeout)
  local r, err = session:exec(script(INSPECT, root), { timeout = timeout })
  if not r then return nil, err end
  if r.code ~= 0 or r.timed_out then return nil, M.failure("inspect", r, timeout) end
  if r.out_truncated then return nil, "inspect printed too much" .. M.truncation(r) end
  local facts = parse_facts(r.out)
  local json = require "rch.json"
  facts.manifest = facts.manifest and json.decode(facts.manifest) or nil
  facts.health = facts.health and json.decode(facts.health) or nil
  return facts
end

--- The installed agent's `--version`, and with `health` its health report.
-- @return {version=, health=table|nil}, or nil, err
function M.probe_agent(session, root, with_health, timeout)
  local rch_json = require "rch.json"
  local r, err = session:exec({ root .. "/bin/rch-wkr", "--version" }, { timeout = timeout })
  if not r then return nil, err end
  if r.code ~= 0 or r.timed_out then return nil, M.failure("rch-wkr --version", r, timeout) end
  if r.out_truncated then return nil, "rch-wkr --version printed too much" .. M.truncation(r) end
  local out = { version = require("rch.version").extract(r.out) }
  if with_health then
    r, err = session:exec({ root .. "/bin/rch-wkr", "health", "--json" }, { timeout = timeout })
    if not r then return nil, err end
    if r.timed_out then return nil, M.failure("rch-wkr health", r, timeout) end
    if r.out_truncated then return nil, "rch-wkr health printed too much" .. M.truncation(r) end
    local health = rch_json.decode(r.out)
    if type(health) ~= "table" then
      return nil, ("rch-wkr health printed no JSON (exit %d): %s%s"):format(r.code, util.clip(util.chomp(r.err)),
        M.truncation(r))
    end
    out.health = health
  end
  return out
end

return M
