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
-- (clipped), "WHAT timed out after N s" or "WHAT stalled: no progress for N s", and what the cap cut.
function M.failure(what, r, timeout)
  if r.stalled then return ("%s stalled: no progress for %d s%s"):format(what, r.stalled, M.truncation(r)) end
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

-- sha256_of FILE: its sha256 as bare hex, or a message and failure on a read
-- error. openssl when the worker has it: measured ~850 MB/s against ~190 MB/s
-- for coreutils sha256sum on the testbed (docs/performance.md).
local HASH = [[
if command -v openssl >/dev/null 2>&1; then sha256_tool="openssl dgst -sha256 -r"; else sha256_tool=sha256sum; fi
sha256_of() {
  h=$($sha256_tool < "$1") && h=${h%% *} && [ ${#h} = 64 ] && { echo "$h"; return 0; }
  echo "cannot hash $1" >&2
  return 1
}
]]

-- The worker root ownership rule, as OpenSSH's StrictModes: every directory
-- from / down to one rch writes into (or runs rch-wkr from), and that
-- binary, is owned by the login user or root and not writable by group or
-- others; a sticky parent (/tmp) passes when the component below it is the
-- login user's (or root's: in a sticky dir nobody else can rename or remove
-- it). Anyone else who can write there could swap a binary rch then runs, or
-- plant a symlink where rch writes. One readlink and one stat per check keep
-- preflight, which runs on every deploy, cheap.
local GUARD = [[
# The effective uid, read by the shell itself (no fork) where /proc has it.
me=
while read -r k _ e _; do [ "$k" = Uid: ] && { me=$e; break; }; done 2>/dev/null </proc/self/status
[ -n "$me" ] || me=$(id -u)
# unsafe [pending] PATH...: prints why an absolute PATH or one of its parents
# breaks the rule and succeeds; fails silently when all pass. Both the path
# as written (a symlink: its owner, and the directory holding it) and the
# path it resolves to are checked. "pending": the login user is about to
# create a child of the (single) PATH.
unsafe() {
  local below0= below list p st uid raw owner path IFS='
'
  if [ "$1" = pending ]; then below0=$me; shift; fi
  list="$*"
  p=$(readlink -f -- "$@") || { echo "cannot resolve $*"; return 0; }
  list="$list$IFS$p"
  set -f
  set --
  for p in $list; do
    case $p in /*) ;; *) echo "not an absolute path: $p"; return 0 ;; esac
    while :; do set -- "$@" "$p"; [ "$p" = / ] && break; p=${p%/*}; [ -n "$p" ] || p=/; done
  done
  set +f
  st=$(stat -c '%u %f %U %n' -- "$@") || { echo "cannot stat $*"; return 0; }
  below=$below0
  while IFS=' ' read -r uid raw owner path; do
    if [ "$uid" != "$me" ] && [ "$uid" != 0 ]; then
      p=$(id -un)
      echo "$path is owned by $owner, not by $p or root: chown $p $path (or use another root)"
      return 0
    fi
    # A symlink's own mode means nothing; sticky dirs pass when the next one down is safe.
    if [ $((0x$raw & 0xf000)) != $((0xa000)) ] && [ $((0x$raw & 022)) != 0 ] &&
      ! { [ $((0x$raw & 01000)) != 0 ] && { [ "$below" = "$me" ] || [ "$below" = 0 ]; }; }; then
      echo "$path (mode $(printf %o $((0x$raw & 07777)))) is writable by group or others: chmod go-w $path"
      return 0
    fi
    below=$uid
    [ "$path" != / ] || below=$below0  # the next line starts another path
  done <<EOF
$st
EOF
  return 1
}
# root_unsafe ROOT: ROOT, and bin/rch-wkr with all it resolves through when
# there is one (silent when ROOT does not exist: there is nothing to run).
root_unsafe() {
  [ -e "$1" ] || return 1
  if [ -e "$1/bin/rch-wkr" ]; then unsafe "$1" "$1/bin" "$1/bin/rch-wkr"; else unsafe "$1"; fi
}
refuse() { echo "unsafe worker root: $1" >&2; exit 4; }
# ensure_dir DIR [pending]: creates DIR (mode 0755, whatever the umask) and its
# missing parents, then refuses unless DIR passes the rule.
ensure_dir() {
  local why err
  if [ -d "$1" ]; then
    why=$(unsafe ${2:-} "$1") || return 0
    echo "unsafe worker root: $why" >&2
    return 1
  fi
  ensure_dir "$(dirname -- "$1")" pending || return 1
  # Made here (0755, ours) in a parent that passed: it passes too. One that
  # appeared meanwhile is checked.
  err=$(mkdir -m 755 -- "$1" 2>&1) && return 0
  [ -d "$1" ] || { echo "$err" >&2; return 1; }
  ensure_dir "$1" ${2:-}
}
# write_to FILE: stdin into FILE; a write error fails with the worker's own words.
write_to() {
  local err
  err=$(cat 2>&1 >"$1") || { echo "cannot write $1: ${err#cat: }" >&2; return 1; }
  err=$(sync -- "$1" 2>&1) || { echo "cannot sync $1: ${err#sync: }" >&2; return 1; }
}
# switch_link TARGET LINK: LINK -> TARGET with one rename; the temp link is made
# with ln -s, which never follows or reuses an existing name.
switch_link() {
  local tmp="${2%/*}/.${2##*/}.new"
  { [ -e "$tmp" ] || [ -L "$tmp" ]; } && rm -f -- "$tmp"
  ln -s -- "$1" "$tmp" && mv -Tf -- "$tmp" "$2"
}
]]

-- root=$1 with "~" or "~/…" resolved against the worker's $HOME (saves a
-- round trip per worker against resolving it first), echoed as root=.
local RESOLVE_ROOT = [[
root=$1
case $root in
"~" | "~/"*)
  [ -n "$HOME" ] || { echo "cannot resolve the worker root $root: \$HOME is not set" >&2; exit 1; }
  root=${HOME%/}${root#"~"} ;;
esac
echo "root=$root"
]]

-- Read-only: preflight and dry run must leave the worker byte-identical, and
-- run no rch-wkr from a root that breaks the ownership rule.
-- With trust_manifest=1, the sha256 of a target that `current` already points
-- at comes from the manifest written at install instead of re-reading 15 MB
-- on every redeploy, if the file's size and mtime are still those the
-- manifest recorded; --force and --verify pass 0 and hash the file for real.
-- As a function (PREFLIGHT runs it; LEASE runs it once it holds the lock):
-- facts ROOT TARGET TRUST_MANIFEST HEALTH.
local FACTS = [[
facts() {
]] .. RESOLVE_ROOT .. [[
target=$2; trust_manifest=$3; health=$4
echo "arch=$(uname -m)"
d=$root
while [ ! -d "$d" ]; do d=$(dirname "$d"); done
# Parsed by the shell: each fork counts when one controller probes a whole fleet.
free=
if out=$(df -Pm "$d" 2>/dev/null); then set -f; set -- ${out#*"
"}; set +f; free=${4-}; fi
echo "disk_free_mb=$free"
if [ -w "$d" ]; then echo writable=1; else echo writable=0; fi
for t in rsync zstd; do
  if command -v "$t" >/dev/null 2>&1; then echo "$t=1"; else echo "$t=0"; fi
done
if command -v zstd >/dev/null 2>&1; then
  zv=
  set -f
  for w in $(zstd --version 2>/dev/null); do
    case $w in v[0-9]*.[0-9]*.[0-9]*) zv=${w#v}; zv=${zv%%[!0-9.]*}; break ;; esac
  done
  set +f
  echo "zstd_version=$zv"
fi
if command -v rustup >/dev/null 2>&1 || [ -x "$HOME/.cargo/bin/rustup" ]; then echo rustup=1; else echo rustup=0; fi
if [ "$d" = "$root" ]; then why=$(root_unsafe "$root"); else why=$(unsafe pending "$d"); fi || why=
[ -z "$why" ] || echo "root_unsafe=$why"
if [ -e "$root/bin/rch-wkr" ] || [ -L "$root/bin/rch-wkr" ]; then
  echo "agent_present=1"
  v=
  if [ -z "$why" ]; then
    v=$("$root/bin/rch-wkr" --version 2>/dev/null)
    v=${v%%"
"*}
    echo "current_version=$v"
  fi
  [ -n "$why" ] || [ -z "$v" ] || [ "$health" != 1 ] || health=run
fi
cur=$(readlink "$root/current" 2>/dev/null) || cur=""
[ -z "$cur" ] || echo "current_link=$cur"
if [ -d "$root/versions" ]; then
  vs=
  for p in "$root"/versions/*; do { [ -e "$p" ] || [ -L "$p" ]; } && vs="$vs${p##*/} "; done
  echo "versions=$vs"
fi
# manifest_of DIR: msha, mst (size and mtime) and mtar (a pulled release
# tarball's sha256) as DIR/manifest.json (one line) recorded them.
manifest_of() {
  local m= t s mt
  msha=""; mst=""; mtar=""
  [ -f "$1/manifest.json" ] || return 0
  IFS= read -r m <"$1/manifest.json" || [ -n "$m" ] || return 0
  t=${m#*\"sha256\":\"}; [ "$t" = "$m" ] || msha=${t%%\"*}
  t=${m#*\"tarball_sha256\":\"}; [ "$t" = "$m" ] || mtar=${t%%\"*}
  case $msha in *[!0-9a-f]*) msha= ;; esac
  case $mtar in *[!0-9a-f]*) mtar= ;; esac
  [ ${#msha} = 64 ] || msha=
  [ ${#mtar} = 64 ] || mtar=
  t=${m#*\"size\":}; s=; [ "$t" = "$m" ] || s=${t%%[!0-9]*}
  t=${m#*\"mtime\":\"}; mt=; [ "$t" = "$m" ] || mt=${t%%\"*}
  case $mt in *[!0-9.]*) mt= ;; esac
  [ -z "$s" ] || [ -z "$mt" ] || mst="$s $mt"
}
f="$root/versions/v$target/rch-wkr"
if [ -f "$f" ]; then
  st=$(stat -c '%s %.9Y' -- "$f")
  echo "target_size=${st% *}"
  echo "target_mtime=${st#* }"
  h=""
  manifest_of "${f%/*}"
  [ -z "$msha" ] || echo "manifest_sha256=$msha"
  # Set by a pull (--source pull): the release tarball this rch-wkr came from.
  [ -z "$mtar" ] || echo "manifest_tarball_sha256=$mtar"
  if [ "$trust_manifest" = 1 ] && [ -n "$msha" ] && [ "$mst" = "$st" ] && [ "$cur" = "versions/v$target" ]; then
    h=$msha
  fi
  [ -n "$h" ] || h=$(sha256_of "$f") || h=""
  echo "target_sha256=$h"
fi
if [ -n "$cur" ] && [ "$cur" != "versions/v$target" ] && [ -f "$root/$cur/rch-wkr" ]; then
  # What a delta upload would patch: the binary the worker runs now.
  manifest_of "$root/$cur"
  h=""
  [ "$trust_manifest" = 1 ] && [ -n "$msha" ] && [ "$mst" = "$(stat -c '%s %.9Y' -- "$root/$cur/rch-wkr")" ] && h=$msha
  [ -n "$h" ] || h=$(sha256_of "$root/$cur/rch-wkr") || h=""
  echo "current_sha256=$h"
fi
if [ -e "$root/state/drain" ]; then echo draining=1; fi
# Last, streamed: an agent that prints too much cuts only its own line.
if [ "$health" = run ]; then printf 'health='; "$root/bin/rch-wkr" health --json 2>/dev/null | head -n 1; fi
}
]]
local PREFLIGHT = HASH .. GUARD .. FACTS .. [[
facts "$@"
]]

-- Facts from preflight's output (also a lease's, see M.lease).
-- @param health_cut when the cap cut the health line: why (the facts before it stand)
local function preflight_facts(out, health_cut)
  local facts = parse_facts(out)
  facts.health_error = health_cut
  facts.disk_free_mb = tonumber(facts.disk_free_mb)
  for _, k in ipairs({ "writable", "rsync", "zstd", "rustup", "agent_present", "draining" }) do
    facts[k] = facts[k] == "1"
  end
  if facts.current_version then
    facts.current_version = require("rch.version").extract(facts.current_version)
  end
  facts.target_size = tonumber(facts.target_size)
  for _, k in ipairs({ "root_unsafe", "manifest_sha256", "manifest_tarball_sha256", "target_sha256", "current_sha256",
    "zstd_version" }) do
    if facts[k] == "" then facts[k] = nil end
  end
  if facts.health then facts.health = require("rch.json").decode(facts.health) end
  return facts
end

--- Gathers the facts preflight checks and dry run predictions are made of.
-- @return facts table, or nil, err
-- @param trust_manifest false: hash the target for real (--force, --verify)
function M.preflight(session, root, target_version, timeout, trust_manifest, with_health)
  local r, err = session:exec(script(PREFLIGHT, root, target_version, trust_manifest == false and 0 or 1,
    with_health and 1 or 0), { timeout = timeout })
  if not r then return nil, err end
  if r.code ~= 0 or r.timed_out then return nil, M.failure("preflight probe", r, timeout) end
  -- Facts cut short cannot be trusted (a missing line reads as a missing tool or agent),
  -- but the health line comes last: when it is what the cap cut, the facts before it stand.
  local out, health_cut = r.out, nil
  if r.out_truncated then
    local at = with_health and out:find("\nhealth=", 1, true)
    if not at then return nil, "preflight probe printed too much" .. M.truncation(r) end
    out, health_cut = out:sub(1, at), "rch-wkr health printed too much" .. M.truncation(r)
  end
  return preflight_facts(out, health_cut)
end

-- receive FILE SHA256 SIZE: stdin into FILE (through `fill`, which a caller
-- may redefine to decode the stream), fsync'd, then read back: the file on
-- the worker is what is verified, not the stream (a full disk truncates the
-- file while the stream still hashes right). dash has no pipefail.
local RECEIVE = [[
fill() { write_to "$1"; }
# Sets received_stat ("SIZE MTIME", what chmod and rename keep) for the caller.
receive() {
  local size got
  fill "$1" || return 1
  received_stat=$(stat -c '%s %.9Y' -- "$1") || return 1
  size=${received_stat% *}
  [ "$size" = "$3" ] || { echo "upload incomplete: $1 has $size bytes, expected $3" >&2; return 1; }
  got=$(sha256_of "$1") || return 1
  [ "$got" = "$2" ] || { echo "sha256 mismatch on the worker: $1 has $got, expected $2" >&2; return 1; }
}
# place DEST TEMPLATE SHA SIZE MODE: stdin into an exclusive temp file made
# from TEMPLATE (mktemp), read back and verified (receive), given MODE, then
# renamed to DEST: DEST is the old file or the whole new one, never a part.
# On a failure or a signal the temp file is removed and on_fail runs (the
# caller may define it).
on_fail() { :; }
place() {
  tmp=$(mktemp "$2") || exit 3
  trap 'rm -f -- "$tmp"; on_fail' EXIT
  trap 'exit 129' HUP INT TERM PIPE
  receive "$tmp" "$3" "$4" || exit 3
  chmod "$5" "$tmp" && mv -f -- "$tmp" "$1" || exit 3
  trap - EXIT
}
]]

-- Parses "size=N" and "mtime=T" (the stat of the verified file) and "sha256=H".
local function verified_facts(out)
  local f = parse_facts(out)
  return { sha256 = f.sha256, size = tonumber(f.size), mtime = f.mtime }
end

-- The upload lands in an exclusive temp name inside the version dir and is
-- renamed to rch-wkr only once read back and verified. Leftovers of uploads
-- whose connection died before their trap ran are removed first. ENC says
-- what the stream is: the file itself (plain), a zstd frame of it (zstd),
-- or a zstd patch (patch) against BASE/rch-wkr, the agent the worker runs
-- now. Whatever came, the decoded file is what `receive` checks. A patch
-- that did not rebuild the file is checked against its base only then (the
-- frame's checksum and the read-back catch a wrong base): when the base is
-- not BASE_SHA (the agent changed since preflight) it exits 12, and the
-- controller sends the compressed or whole file instead.
local TRANSFER = HASH .. GUARD .. RECEIVE .. [[
root=$1; ver=$2; want=$3; want_size=$4; enc=$5; base=$6; base_sha=$7
dir="$root/versions/v$ver"
[ "$enc" != patch ] || base="$root/$base/rch-wkr"
ensure_dir "$dir" || exit 4
set -- "$root"/versions/*/.rch-wkr.part.*
{ [ -e "$1" ] || [ -L "$1" ]; } && rm -f -- "$@"
if [ "$enc" != plain ]; then
  fill() {
    local err
    if [ "$enc" = patch ]; then
      err=$(zstd -d -q -f --patch-from="$base" -o "$1" 2>&1)
    else
      err=$(zstd -d -q -f -o "$1" 2>&1)
    fi || { echo "cannot decode the $enc upload into $1: ${err#zstd: }" >&2; return 1; }
    err=$(sync -- "$1" 2>&1) || { echo "cannot sync $1: ${err#sync: }" >&2; return 1; }
  }
fi
on_fail() {
  rmdir -- "$dir" 2>/dev/null || true  # an empty version dir is no version
  [ "$enc" = patch ] || return 0
  got=$(sha256_of "$base" 2>/dev/null) || got="unreadable"
  [ "$got" = "$base_sha" ] || { echo "patch base $base has sha256 $got, not $base_sha" >&2; exit 12; }
}
place "$dir/rch-wkr" "$dir/.rch-wkr.part.XXXXXX" "$want" "$want_size" 755
printf 'size=%s\nmtime=%s\nsha256=%s\n' "${received_stat% *}" "${received_stat#* }" "$want"
]]

--- The time an upload of `size` bytes may take: command_timeout (hashing,
-- sync) plus the size at [defaults] min_transfer_mbps. A hung worker is
-- caught sooner, by the session's stall_timeout.
function M.upload_timeout(size, defaults)
  return defaults.command_timeout + math.ceil(size * 8 / (defaults.min_transfer_mbps * 1e6))
end

-- The one streamed, verified upload (deploy's transfer, fleet copy, fleet.upload):
-- local_path into the stdin of argv, a script that ends in `place`.
-- @param progress nil, or an rch.ssh.progress() counter the upload updates (the live view reads it)
-- @return the exec result, or nil, err naming `what` (and the result when the command failed)
local function upload(session, local_path, argv, what, timeout, progress)
  local r, err = session:upload(local_path, argv, { timeout = timeout, progress = progress })
  if not r then return nil, err end
  if r.code ~= 0 or r.timed_out then return nil, M.failure(what, r, timeout), r end
  return r
end

--- Uploads the artifact into <root>/versions/v<ver>/rch-wkr.
-- @param progress nil, or an rch.ssh.progress() counter the upload updates (the live view reads it)
-- @param enc nil (the file itself), or what rch.deploy.transfer chose to send instead:
--   {method = "zstd" | "patch", path = the file sent, base_link = "versions/v…", base_sha256 = …}
-- @return {sha256, size, mtime} of the file as verified on the worker, or nil, err, and
--   "base" when the patch base on the worker is not the expected one (nothing was written)
function M.transfer(session, root, version, artifact, timeout, progress, enc)
  enc = enc or {}
  local r, err, failed = upload(session, enc.path or artifact.path, script(TRANSFER, root, version, artifact.sha256,
    artifact.size, enc.method or "plain", enc.base_link or "", enc.base_sha256 or ""), "transfer", timeout, progress)
  if not r then return nil, err, failed and failed.code == 12 and not failed.timed_out and "base" or nil end
  return verified_facts(r.out)
end

-- Pull mode: the worker fetches a release tarball itself, with curl (else
-- wget). fetch_opts sets "$@" to the tool's options: a connect timeout,
-- redirects only to http(s), only to https when https=1 (curl; wget cannot
-- limit the scheme of a redirect, the sha256 check still holds). The URL and
-- all else are arguments; certificates are checked against the worker's own CA store.
local FETCH = [[
fetch_tool() {
  if command -v curl >/dev/null 2>&1; then echo curl; elif command -v wget >/dev/null 2>&1; then echo wget; fi
}
# run_fetch head|get URL [FILE]: HEAD of URL, or URL into FILE; the tool's first words on failure.
run_fetch() {
  local mode=$1 url=$2 out=${3:-/dev/null} p=http,https err
  [ "$https" = 0 ] || p=https
  if [ "$tool" = curl ]; then
    set -- -fsSL --max-redirs 5 --proto "=$p" --proto-redir "=$p" --connect-timeout "$ct"
    if [ "$mode" = head ]; then set -- "$@" -I -o /dev/null; else set -- "$@" -o "$out"; fi
    err=$(curl "$@" -- "$url" 2>&1) && return 0
  else
    set -- -nv --max-redirect=5 --timeout="$ct" --tries=1
    [ "$https" = 0 ] || set -- "$@" --https-only
    if [ "$mode" = head ]; then set -- "$@" --spider; else set -- "$@" -O "$out"; fi
    err=$(wget "$@" -- "$url" 2>&1) && return 0
  fi
  printf '%s: %s\n' "$tool" "${err#"$tool: "}" | grep -v '^ *$' | head -n 1 >&2
  return 1
}
]]

-- Read-only, in preflight: which fetch tool the worker has (curl, wget or
-- none), that tar and gzip are there, and whether the tarball URL answers a HEAD.
local PULL_PROBE = FETCH .. [[
url=$1; https=$2; ct=$3
tool=$(fetch_tool)
echo "fetch_tool=$tool"
missing=""
for t in tar gzip; do command -v "$t" >/dev/null 2>&1 || missing="$missing $t"; done
[ -z "$missing" ] || echo "fetch_missing=${missing# }"
[ -n "$tool" ] || exit 0
if err=$(run_fetch head "$url" 2>&1); then echo fetch_reachable=1; else
  echo fetch_reachable=0
  echo "fetch_error=$err"
fi
]]

--- Pull mode's preflight probe of the tarball URL (see PULL_PROBE).
-- @param p {url, https, connect_timeout}
-- @return {fetch_tool = "curl"|"wget"|nil, fetch_missing = "tar gzip"|…|nil, fetch_reachable = bool,
--   fetch_error = text|nil}, or nil, err
function M.pull_probe(session, p, timeout)
  local r, err = session:exec(script(PULL_PROBE, p.url, p.https and 1 or 0, p.connect_timeout),
    { timeout = timeout })
  if not r then return nil, err end
  if r.code ~= 0 or r.timed_out then return nil, M.failure("pull probe", r, timeout) end
  local f = parse_facts(r.out)
  return { fetch_tool = f.fetch_tool ~= "" and f.fetch_tool or nil, fetch_missing = f.fetch_missing,
    fetch_reachable = f.fetch_reachable == "1", fetch_error = f.fetch_error }
end

-- The pull itself: the tarball into a private temp dir inside the version
-- dir, its sha256 checked against the signed one before anything is read
-- from it, then only its rch-wkr member extracted, which must be the one
-- top-level regular file of that name (no link, device or directory; tar
-- never extracts an absolute or ../ name, and --no-recursion keeps it to
-- that one member). The file is then renamed to rch-wkr, as TRANSFER's
-- `place` does; the temp dir goes on every exit. A worker that runs this
-- version from other bytes keeps them (exit 14): replacing the only copy a
-- rollback returns to is what preflight's same_version rule refuses.
local PULL = HASH .. GUARD .. FETCH .. [[
root=$1; ver=$2; url=$3; want=$4; https=$5; ct=$6
dir="$root/versions/v$ver"
tool=$(fetch_tool)
[ -n "$tool" ] || { echo "neither curl nor wget is installed" >&2; exit 3; }
ensure_dir "$dir" || exit 4
rm -rf -- "$root"/versions/*/.rch-pull.*
work=$(mktemp -d "$dir/.rch-pull.XXXXXX") || exit 3
trap 'rm -rf -- "$work"; rmdir -- "$dir" 2>/dev/null || true' EXIT
trap 'exit 129' HUP INT TERM PIPE
run_fetch get "$url" "$work/t.tar.gz" 2>"$work/err" || { echo "could not fetch $url: $(cat "$work/err")" >&2; exit 3; }
got=$(sha256_of "$work/t.tar.gz") || exit 3
[ "$got" = "$want" ] || {
  echo "$url has sha256 $got, but the release's signed checksums.txt says $want: refusing it" >&2; exit 13; }
# Decompressed once: listed twice and extracted from the plain tar.
err=$(gzip -dc <"$work/t.tar.gz" 2>&1 >"$work/t.tar") || { echo "cannot decompress $url: $err" >&2; exit 13; }
names=$(tar -tf "$work/t.tar") || { echo "cannot list $url" >&2; exit 13; }
n=$(printf '%s\n' "$names" | grep -cxE '(\./)*rch-wkr(/.*)?') || true
m=$(printf '%s\n' "$names" | grep -cx 'rch-wkr') || true
[ "$n" = 1 ] && [ "$m" = 1 ] || { echo "$url has $n entries named rch-wkr, expected one top-level file" >&2; exit 13; }
kind=$(tar -tvf "$work/t.tar" --no-recursion -- rch-wkr | cut -c1)
[ "$kind" = - ] || { echo "rch-wkr in $url is not a regular file (tar type '$kind')" >&2; exit 13; }
mkdir -m 700 -- "$work/x" || exit 3
err=$(tar -xmf "$work/t.tar" -C "$work/x" --no-recursion --no-same-owner --no-same-permissions -- rch-wkr 2>&1) ||
  { echo "cannot extract rch-wkr from $url: $err" >&2; exit 13; }
new="$work/x/rch-wkr"
[ -f "$new" ] && [ ! -L "$new" ] || { echo "rch-wkr extracted from $url is not a regular file" >&2; exit 13; }
chmod 755 "$new" && sync -- "$new" || exit 3
sha=$(sha256_of "$new") || exit 3
f="$dir/rch-wkr"
if [ -f "$f" ] && [ "$(readlink "$root/current" 2>/dev/null)" = "versions/v$ver" ]; then
  have=$(sha256_of "$f") || exit 3
  [ "$have" = "$sha" ] || {
    echo "same_version: the worker runs $ver with other bytes (sha256 $have) than the release's rch-wkr" \
      "($sha); deploying a different build under the same version would leave nothing to roll back to" >&2
    exit 14
  }
else
  mv -f -- "$new" "$f" || exit 3
fi
stat --printf 'size=%s\nmtime=%.9Y\n' -- "$f"
echo "sha256=$sha"
]]

--- Pulls the release tarball on the worker and puts its rch-wkr into
-- <root>/versions/v<ver>/rch-wkr (see PULL).
-- @param p {url, sha256 (the tarball's, signed), https, connect_timeout}
-- @return {sha256, size, mtime} of the file as verified on the worker, or nil, err
function M.pull(session, root, version, p, timeout)
  local r, err = session:exec(script(PULL, root, version, p.url, p.sha256, p.https and 1 or 0,
    p.connect_timeout), { timeout = timeout })
  if not r then return nil, err end
  if r.code ~= 0 or r.timed_out then return nil, M.failure("pull", r, timeout) end
  return verified_facts(r.out)
end

-- A file anywhere on the worker (fleet copy, rch run scripts): the same
-- exclusive temp name beside it, read-back check and rename. mkdirs=1
-- creates the missing directories above it.
local PUT = HASH .. GUARD .. RECEIVE .. [[
dest=$1; want=$2; want_size=$3; mode=$4; mkdirs=$5
[ ! -d "$dest" ] || { echo "$dest is a directory: name the file in it" >&2; exit 3; }
[ "$mkdirs" = 0 ] || mkdir -p -- "$(dirname -- "$dest")"
place "$dest" "$dest.rch-part.XXXXXX" "$want" "$want_size" "$mode"
]]

--- Uploads local_path to dest (absolute, or relative to the login home).
-- @param opts {mode = "644" (octal text), mkdirs = true}
function M.put(session, local_path, dest, sha256, timeout, opts)
  opts = opts or {}
  local size = require("rch").fs.size(local_path)
  local r, err = upload(session, local_path, script(PUT, dest, sha256, size, opts.mode or "644",
    opts.mkdirs == false and 0 or 1), "upload to " .. dest, timeout)
  if not r then return nil, err end
  return true
end

-- What a copy has to do: "same" (sha256 and mode match), "chmod" (same
-- bytes: the mode was fixed here), or "copy" (absent or other bytes).
local SAME = HASH .. [[
dest=$1; want=$2; mode=$3
[ ! -d "$dest" ] || { echo "$dest is a directory: name the file in it" >&2; exit 3; }
if [ ! -f "$dest" ] || [ "$(sha256_of "$dest" 2>/dev/null)" != "$want" ]; then echo copy; exit 0; fi
[ "$(stat -c %a -- "$dest")" = "$mode" ] && { echo same; exit 0; }
chmod "$mode" "$dest" || exit 3
echo chmod
]]

--- Compares dest with the file to copy and fixes only its mode when the bytes match.
-- @param mode octal text without leading zeros, as stat %a prints it ("644", "4755")
-- @return "same", "chmod" or "copy"; or nil, err
function M.compare(session, dest, sha256, mode, timeout)
  local r, err = session:exec(script(SAME, dest, sha256, mode), { timeout = timeout })
  if not r then return nil, err end
  if r.code ~= 0 or r.timed_out then return nil, M.failure("checking " .. dest, r, timeout) end
  local what = util.chomp(r.out)
  if what ~= "same" and what ~= "chmod" and what ~= "copy" then
    return nil, ("checking %s printed %s"):format(dest, util.clip(what, 80))
  end
  return what
end

-- prune_versions ROOT KEEP CUR PREV: keeps the KEEP most recently installed
-- versions (by manifest, else directory, mtime), always counting CUR and
-- PREV among them; removes the others and prints "pruned=NAME" for each.
-- Only plain version directories are touched. The caller has checked the
-- root (and so ROOT/versions) against the ownership rule. A directory that
-- cannot be removed stops it, printing prune_error=.
-- Each removal may take at most LIMIT seconds (half the install's timeout,
-- then SIGKILL): an `rm -rf` stuck on a dead mount must not fail an install
-- that has already switched `current`; it is only reported.
local PRUNE = [[
within() {
  if command -v timeout >/dev/null 2>&1; then timeout -s KILL "$@"; else shift; "$@"; fi
}
prune_versions() {
  local v="$1/versions" keep=$2 cur=$3 prev=$4 limit=$5 d name t list=""
  [ "$prev" != "$cur" ] || prev=
  for d in "$cur" "$prev"; do if [ -n "$d" ] && [ -d "$v/$d" ]; then keep=$((keep - 1)); fi; done
  for d in "$v"/v*; do
    name=${d##*/}
    case $name in *[!A-Za-z0-9._+-]*) continue ;; esac
    [ -d "$d" ] && [ ! -L "$d" ] && [ "$name" != "$cur" ] && [ "$name" != "$prev" ] || continue
    if [ -f "$d/manifest.json" ]; then t=$(stat -c %.9Y -- "$d/manifest.json"); else t=$(stat -c %.9Y -- "$d"); fi
    list="$list${t:-0} $name
"
  done 2>/dev/null
  [ -n "$list" ] || return 0
  printf '%s' "$list" | sort -rn | while read -r _ name; do
    if [ "$keep" -gt 0 ]; then keep=$((keep - 1)); continue; fi
    err=$(within "$limit" rm -rf -- "${v:?}/${name:?}" 2>&1) || {
      [ $? != 137 ] || err="not done within $limit s, stopped"
      echo "prune_error=cannot remove $v/$name: ${err%%"
"*}"
      exit 3
    }
    echo "pruned=$name"
  done
}
]]

-- Writes the manifest from the verified facts (the file must still have the
-- size and mtime it had when it was read back and hashed), then switches
-- `current` with one rename; bin/rch-wkr -> ../current/rch-wkr is created
-- once the same way, so it never points at a missing or partial file. A
-- manifest that cannot be written stops here, before `current` moves.
-- Then, in the same round trip, old versions beyond KEEP go (never the
-- new one or PREV, the rollback target); that failing is only reported
-- (prune_error=): the worker runs the new version either way.
local INSTALL = GUARD .. PRUNE .. [[
root=$1; ver=$2; sha=$3; size=$4; mtime=$5; dep=$6; now=$7; tar_sha=$8; keep=$9; prev=${10}; limit=${11}
dir="$root/versions/v$ver"
f="$dir/rch-wkr"
[ -f "$f" ] && [ -x "$f" ] || { echo "missing $f" >&2; exit 3; }
if why=$(unsafe "$f"); then refuse "$why"; fi
st=$(stat -c '%s %.9Y' -- "$f")
[ "$st" = "$size $mtime" ] ||
  { echo "$f changed since it was verified (size and mtime $st, verified $size $mtime)" >&2; exit 3; }
tmp=$(mktemp "$dir/.manifest.json.XXXXXX") || exit 3
trap 'rm -f -- "$tmp"' EXIT
extra=""
[ -z "$tar_sha" ] || extra=$(printf ',"tarball_sha256":"%s"' "$tar_sha")
printf '{"version":"%s","sha256":"%s","size":%s,"mtime":"%s","deployment_id":"%s","installed_at":"%s"%s}\n' \
  "$ver" "$sha" "$size" "$mtime" "$dep" "$now" "$extra" | write_to "$tmp" || exit 3
chmod 644 "$tmp" && mv -f -- "$tmp" "$dir/manifest.json" || exit 3
trap - EXIT
ensure_dir "$root/bin" || exit 4
switch_link "versions/v$ver" "$root/current" || exit 3
if [ "$(readlink "$root/bin/rch-wkr" 2>/dev/null)" != "../current/rch-wkr" ]; then
  switch_link ../current/rch-wkr "$root/bin/rch-wkr" || exit 3
fi
[ "$keep" = 0 ] || prune_versions "$root" "$keep" "v$ver" "$prev" "$limit"
exit 0
]]

--- Records the manifest, switches `current` to the version, and prunes.
-- @param verified {sha256, size, mtime[, tarball_sha256]} of versions/v<ver>/rch-wkr, from transfer, pull or
--   preflight; tarball_sha256 (a pulled release tarball) goes into the manifest too
-- @param prune nil, or {keep = [deploy] keep_versions, previous = "v…" or ""}: old version directories go
-- @return true, {removed = names, error = why pruning failed or nil}; or nil, err
function M.install(session, root, version, verified, deployment_id, now, timeout, prune)
  local r, err = session:exec(script(INSTALL, root, version, verified.sha256, verified.size, verified.mtime,
    deployment_id, now, verified.tarball_sha256 or "", prune and prune.keep or 0, prune and prune.previous or "",
    math.max(1, math.floor(timeout / 2))),
    { timeout = timeout })
  if not r then return nil, err end
  if r.code ~= 0 or r.timed_out then return nil, M.failure("install", r, timeout) end
  local pruned = { removed = {} }
  for k, v in r.out:gmatch("([%w_]+)=([^\n]*)") do
    if k == "pruned" then pruned.removed[#pruned.removed + 1] = v elseif k == "prune_error" then pruned.error = v end
  end
  return true, pruned
end

-- Back to the previous `current` target, or to no agent at all when there was none.
local ROLLBACK = GUARD .. [[
root=$1; prev=$2
if why=$(unsafe "$root"); then refuse "$why"; fi
if [ -z "$prev" ]; then
  rm -f -- "$root/bin/rch-wkr" "$root/current"
  exit 0
fi
[ -x "$root/$prev/rch-wkr" ] || { echo "previous version $root/$prev is gone" >&2; exit 3; }
if why=$(unsafe "$root/$prev/rch-wkr"); then refuse "$why"; fi
switch_link "$prev" "$root/current"
]]

function M.rollback(session, root, previous_link, timeout)
  local r, err = session:exec(script(ROLLBACK, root, previous_link or ""), { timeout = timeout })
  if not r then return nil, err end
  if r.code ~= 0 or r.timed_out then return nil, M.failure("rollback", r, timeout) end
  return true
end

-- Runs <root>/bin/rch-wkr ARGS… only if the root passes the ownership rule
-- (exit 4 with the reason otherwise; 127 when no agent is installed).
local AGENT = GUARD .. [[
root=$1; shift
if why=$(root_unsafe "$root"); then refuse "$why"; fi
exec "$root/bin/rch-wkr" "$@"
]]

--- The argv that runs `<root>/bin/rch-wkr ARGS…` on a worker, guarded by the ownership rule.
function M.agent_argv(root, ...)
  return script(AGENT, root, ...)
end

--- `rch-wkr drain --timeout S` on the worker (only when an agent is installed).
function M.drain(session, root, timeout_s)
  local r, err = session:exec(M.agent_argv(root, "drain", "--timeout", timeout_s),
    { timeout = timeout_s + 30 })
  if not r then return nil, err end
  if r.code == 3 and not r.timed_out then
    return nil, "drain timed out: " .. util.clip(util.chomp(r.err)) .. M.truncation(r)
  end
  if r.code ~= 0 or r.timed_out then return nil, M.failure("rch-wkr drain", r, timeout_s + 30) end
  return true
end

function M.undrain(session, root, timeout)
  local r, err = session:exec(M.agent_argv(root, "undrain"), { timeout = timeout })
  if not r then return nil, err end
  if r.code ~= 0 or r.timed_out then return nil, M.failure("rch-wkr undrain", r, timeout) end
  return true
end

-- A toolchain already installed is left alone unless update=1: an offline
-- worker that has it must not fail. `rustup toolchain list` names a host
-- toolchain "<name>-<triple>" (a triple starts with a letter, so "nightly"
-- does not match "nightly-2024-01-01-…"). Exit 10: missing and the install
-- failed; 11: installed but the update failed. Prints what it did.
local TOOLCHAIN = [[
tc=$1; update=$2
if command -v rustup >/dev/null 2>&1; then r=rustup; else r="$HOME/.cargo/bin/rustup"; fi
list=$("$r" toolchain list) || exit 3
present=0
while read -r name _; do
  case $name in "$tc" | "$tc"-[a-z]*) present=1 ;; esac
done <<EOF
$list
EOF
if [ $present = 0 ]; then
  "$r" toolchain install "$tc" --profile minimal >/dev/null || exit 10
  echo installed
elif [ "$update" = 1 ]; then
  "$r" update "$tc" --no-self-update >/dev/null || exit 11
  echo updated
else
  echo "already installed"
fi
]]

--- Makes sure the toolchain is installed (and with `update` up to date).
-- @return what was done ("already installed", "installed", "updated"), or nil, err
function M.toolchain(session, toolchain, update, timeout)
  local r, err = session:exec(script(TOOLCHAIN, toolchain, update and 1 or 0), { timeout = timeout })
  if not r then return nil, err end
  if r.timed_out or (r.code ~= 0 and r.code ~= 10 and r.code ~= 11) then
    return nil, M.failure("rustup toolchain list", r, timeout)
  end
  local why = util.clip(util.chomp(r.err))
  why = (why ~= "" and ": " .. why or "") .. M.truncation(r)
  if r.code == 10 then return nil, ("toolchain %s is missing and could not be installed%s"):format(toolchain, why) end
  if r.code == 11 then return nil, ("toolchain %s is installed but was not updated%s"):format(toolchain, why) end
  return util.chomp(r.out)
end

-- The controller lease: an flock on <root>/controller.lock, held by this
-- script for as long as the controller's session lives (the guard kills it
-- when the channel closes or the connection drops, so a crashed controller
-- frees it), so that two controllers never change one worker at once. The
-- file names the holder. Prints "held" once it holds the lock; otherwise
-- exits 75 with the holder on stderr (busy), or 69 with why no lease is
-- possible here (unavailable: no flock, a root that cannot be made), which
-- preflight then reports in its own words. With read=1 it then reads the
-- preflight facts of TARGET under the lock and prints them on the "held"
-- line (\036 for each newline): the lease and the read in one round trip.
local LEASE = HASH .. GUARD .. FACTS .. [[
root=$1; owner=$2; wait=$3; read=$4; target=$5; trust_manifest=$6
lock="$root/controller.lock"
if [ -d "$root" ]; then
  if why=$(root_unsafe "$root"); then echo "unsafe worker root: $why" >&2; exit 69; fi
else
  ensure_dir "$root" || exit 69
fi
command -v flock >/dev/null 2>&1 || { echo "flock(1) is not installed (util-linux)" >&2; exit 69; }
exec 9>>"$lock" || exit 69
if ! flock -n 9; then
  head -c 512 "$lock" >&2
  [ "$wait" -gt 0 ] && flock -w "$wait" 9 || exit 75
fi
: >"$lock"
printf '%s\n' "$owner" >>"$lock"
if [ "$read" = 1 ]; then
  printf 'held\036%s\n' "$(facts "$root" "$target" "$trust_manifest" 0 | tr '\n' '\036')"
else
  echo held
fi
while :; do sleep 3600; done
]]

--- Takes the controller lease on the worker (see LEASE), waiting up to
-- `wait` seconds for another controller to let go.
-- @param read {target, trust_manifest}: also read the preflight facts under the lock
-- @return id of the held lease (and with `read` its facts), or false, holder
--   (another controller has it), or nil, why (no lease possible on this worker), or nil, err
function M.lease(session, root, owner, wait, timeout, read)
  local r, err = session:hold(script(LEASE, root, owner, math.max(0, math.floor(wait)), read and 1 or 0,
    read and read.target or "", read and read.trust_manifest == false and 0 or 1), { timeout = wait + timeout })
  if not r then return nil, err end
  if r.held then
    local text = read and r.line:match("^held\30(.*)$")
    return r.id, text and preflight_facts((text:gsub("\30", "\n"))) or nil
  end
  local said = util.clip(util.chomp(r.err))
  if r.code == 75 then return false, said ~= "" and said or "another controller" end
  if r.code == 69 then return nil, said end
  return nil, M.failure("controller lease", r, wait + timeout)
end

-- Read-only: what `rch fleet verify` checks, in one command. The binary is
-- hashed for real; health runs only from a root that passes the ownership rule.
local INSPECT = HASH .. GUARD .. RESOLVE_ROOT .. [[
link=$(readlink "$root/current" 2>/dev/null) || link=""
echo "current_link=$link"
bin=$(readlink "$root/bin/rch-wkr" 2>/dev/null) || bin=""
echo "bin_link=$bin"
if [ -n "$link" ] && [ -f "$root/$link/rch-wkr" ]; then
  echo "binary_sha256=$(sha256_of "$root/$link/rch-wkr")"
  echo "binary_size=$(stat -c %s -- "$root/$link/rch-wkr")"
  if [ -f "$root/$link/manifest.json" ]; then echo "manifest=$(head -n 1 "$root/$link/manifest.json")"; fi
fi
parts=""
for p in "$root"/versions/*/.rch-wkr.part.*; do [ -e "$p" ] && parts="$parts ${p#"$root"/}"; done
echo "partials=${parts# }"
if why=$(root_unsafe "$root"); then
  echo "root_unsafe=$why"
elif [ -x "$root/bin/rch-wkr" ]; then
  echo "health=$("$root/bin/rch-wkr" health --json 2>/dev/null | head -n 1)"
fi
]]

--- Facts for verification: links, the current binary's sha256 and size, its
-- manifest (decoded), leftover partial uploads, root_unsafe (why the root
-- breaks the ownership rule) and the agent's health (decoded). @return facts, or nil, err
function M.inspect(session, root, timeout)
  local r, err = session:exec(script(INSPECT, root), { timeout = timeout })
  if not r then return nil, err end
  if r.code ~= 0 or r.timed_out then return nil, M.failure("inspect", r, timeout) end
  if r.out_truncated then return nil, "inspect printed too much" .. M.truncation(r) end
  local facts = parse_facts(r.out)
  local json = require "rch.json"
  facts.manifest = facts.manifest and json.decode(facts.manifest) or nil
  facts.health = facts.health and json.decode(facts.health) or nil
  facts.binary_size = tonumber(facts.binary_size)
  for _, k in ipairs({ "root_unsafe", "partials" }) do
    if facts[k] == "" then facts[k] = nil end
  end
  return facts
end

--- The installed agent's `--version`, and with `health` its health report.
-- @return {version=, health=table|nil}, or nil, err
function M.probe_agent(session, root, with_health, timeout)
  local rch_json = require "rch.json"
  local r, err = session:exec(M.agent_argv(root, "--version"), { timeout = timeout })
  if not r then return nil, err end
  if r.code ~= 0 or r.timed_out then return nil, M.failure("rch-wkr --version", r, timeout) end
  if r.out_truncated then return nil, "rch-wkr --version printed too much" .. M.truncation(r) end
  local out = { version = require("rch.version").extract(r.out) }
  if with_health then
    r, err = session:exec(M.agent_argv(root, "health", "--json"), { timeout = timeout })
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
