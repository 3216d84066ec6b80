# shellcheck shell=bash disable=SC2034
# Shared setup for the deploy benchmarks (sourced, not run):
# deploy_vs_peers.sh and deploy_variants.sh. Callers set bench_name, then
# call bench_setup DIR BUILD MAX_N; everything lands under DIR.

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
testbed=$repo/scripts/testbed.sh
readonly payload_bytes=$((15 * 1024 * 1024))
readonly kex=curve25519-sha256
readonly cipher=aes128-gcm@openssh.com
readonly forced_opts="-o KexAlgorithms=$kex -o Ciphers=$cipher"

die() {
  echo "${bench_name:-bench}: FAILED: $*" >&2
  exit 1
}
say() { echo "${bench_name:-bench}: $*" >&2; }

# bench_option ARGS…: takes one of the options every benchmark shares (--workers N, --runs N,
# --parallel P, --dir DIR, --build DIR, --keep) into n, runs, parallel, dir, build or keep, and
# sets bench_shift to the words it used; fails when $1 is not one of them.
bench_option() {
  bench_shift=2
  case $1 in
    --workers) n=${2:?--workers needs a value} ;;
    --runs) runs=${2:?--runs needs a value} ;;
    --parallel) parallel=${2:?--parallel needs a value} ;;
    --dir) dir=${2:?--dir needs a value} ;;
    --build) build=${2:?--build needs a value} ;;
    --keep) keep=yes; bench_shift=1 ;;
    *) return 1 ;;
  esac
}

bench_install_peers() {
  if ! command -v parallel-scp >/dev/null || ! command -v clush >/dev/null; then
    say "installing pssh and clustershell"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q pssh clustershell >/dev/null; then
      apt-get update -q >/dev/null
      apt-get install -y -q pssh clustershell >/dev/null || die "apt-get install pssh clustershell failed"
    fi
  fi
  command -v parallel-scp >/dev/null || die "parallel-scp missing after installing pssh"
  command -v clush >/dev/null || die "clush missing after installing clustershell"
}

# sha256 of files as `hash  path` lines; openssl (SHA-NI) is ~4x faster than
# coreutils here, which keeps the checks between runs cheap.
hash_files() {
  if command -v openssl >/dev/null; then
    openssl dgst -sha256 -r "$@" | sed 's/ \*/  /'
  else
    sha256sum "$@"
  fi
}

bench_restart_worker() {
  bash "$testbed" stop "$1" "$bench_dir" >/dev/null
  bash "$testbed" start "$1" "$bench_dir" >/dev/null
}

# bench_setup DIR BUILD MAX_N. Sets bench_dir, rch, ver, payload, payload_sha,
# elf_size, cfg, rch_commit, rch_dirty; exports the RCH_* directories.
bench_setup() {
  local dir=$1 build=$2 max_n=$3 k
  ((EUID == 0)) || die "run as root (installs pssh/clustershell, wipes the testbed user's worker roots)"
  [[ -x $build/rch && -x $build/rch-wkr ]] || die "no $build/rch or $build/rch-wkr (ninja -C $build)"
  bench_install_peers
  mkdir -p "$dir"
  bench_dir=$(cd "$dir" && pwd -P)
  rm -rf "${bench_dir:?}/bin" "${bench_dir:?}/home" "${bench_dir:?}/state" "${bench_dir:?}/data" "${bench_dir:?}/runs"
  mkdir -p "$bench_dir/bin" "$bench_dir/runs"
  # The build tree is shared and may be rebuilt while a benchmark runs.
  cp "$build/rch" "$build/rch-wkr" "$bench_dir/bin/"
  rch=$bench_dir/bin/rch
  rch_commit=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
  rch_dirty=$(git -C "$repo" status --porcelain 2>/dev/null | wc -l)

  bash "$testbed" up "$max_n" "$bench_dir" >&2
  # Each worker's sftp server starts in that worker's root, so one relative
  # destination serves every host of a parallel-scp or clush invocation.
  for ((k = 1; k <= max_n; k++)); do
    sed -i "s|^Subsystem sftp .*|Subsystem sftp /usr/lib/openssh/sftp-server -d $bench_dir/w$k/root|" \
      "$bench_dir/w$k/sshd_config"
    bench_restart_worker "$k"
  done
  export RCH_CONFIG_DIR=$bench_dir RCH_STATE_DIR=$bench_dir/state RCH_DATA_DIR=$bench_dir/data RCH_HOME=$bench_dir/home

  ver=$("$bench_dir/bin/rch-wkr" --version | awk '{print $2; exit}')
  [[ -n $ver ]] || die "cannot read the version of $build/rch-wkr"
  payload=$RCH_HOME/versions/v$ver/rch-wkr
  mkdir -p "$(dirname "$payload")"
  # Stripped: the build's debug info (most of its 7 MB) compresses, and rch sends a payload that
  # compresses as a zstd frame; this one is to be the incompressible full copy.
  strip -o "$payload" "$bench_dir/bin/rch-wkr" 2>/dev/null || cp "$bench_dir/bin/rch-wkr" "$payload"
  elf_size=$(stat -c %s "$payload")
  ((elf_size < payload_bytes)) || die "rch-wkr ($elf_size bytes) is larger than the payload size"
  # An ELF ignores trailing bytes: still a working rch-wkr, now 15 MiB, mostly incompressible.
  head -c $((payload_bytes - elf_size)) /dev/urandom >>"$payload"
  chmod 755 "$payload"
  [[ $("$payload" --version | awk '{print $2; exit}') == "$ver" ]] || die "the padded payload does not report --version $ver"
  payload_sha=$(hash_files "$payload" | cut -d' ' -f1)

  # The peers' ssh config: host aliases for clush, the testbed's key and
  # known_hosts, then Debian's own client defaults.
  cfg=$bench_dir/ssh_config
  {
    for ((k = 1; k <= max_n; k++)); do
      printf 'Host w%d\n  HostName 127.0.0.1\n  Port %s\n' "$k" "$(<"$bench_dir/w$k/port")"
    done
    printf 'Host *\n  User rchtest\n  IdentityFile %s\n  IdentitiesOnly yes\n' "$bench_dir/client/id_ed25519"
    printf '  UserKnownHostsFile %s\n  StrictHostKeyChecking yes\n  BatchMode yes\n' "$bench_dir/known_hosts"
    printf '  Include /etc/ssh/ssh_config\n'
  } >"$cfg"
}

# parallel-scp host list of workers 1..N (user@127.0.0.1:port).
bench_hosts_file() {
  local n=$1 k
  for ((k = 1; k <= n; k++)); do echo "rchtest@127.0.0.1:$(<"$bench_dir/w$k/port")"; done >"$bench_dir/hosts.$n"
  echo "$bench_dir/hosts.$n"
}

# Empties every worker root (as root: the files belong to rchtest), then
# flushes, so no run pays for the previous one's writeback.
bench_wipe() {
  local max_n=$1 k
  for ((k = 1; k <= max_n; k++)); do find "$bench_dir/w$k/root" -mindepth 1 -delete; done
  sync
}

# "Accepted publickey" lines in each of workers 1..N's sshd log, one per line.
bench_accepted_counts() {
  local n=$1 k
  for ((k = 1; k <= n; k++)); do grep -c 'Accepted publickey' "$bench_dir/w$k/sshd.log" || true; done
}

# bench_check_files LABEL PATH... : every file exists and has the payload's sha256.
bench_check_files() {
  local label=$1 f bad
  shift
  for f in "$@"; do [[ -f $f ]] || die "$label: $f is missing"; done
  bad=$(hash_files "$@" | awk -v want="$payload_sha" '$1 != want { print $2 }')
  [[ -z $bad ]] || die "$label: wrong sha256 on: $bad"
}

# bench_check_rch_result LABEL JSON N completed|skipped
bench_check_rch_result() {
  python3 - "$2" "$3" "$4" <<'PY' || die "$1: unexpected rch result, see $2"
import json, sys
r = json.load(open(sys.argv[1]))
n, want = int(sys.argv[2]), sys.argv[3]
c = r["counts"]
ok = r["outcome"] == "completed" and c[want] == n and sum(v for k, v in c.items() if k != want) == 0
if not ok:
    print(f"outcome {r['outcome']}, counts {c}, expected {n} {want}", file=sys.stderr)
sys.exit(0 if ok else 1)
PY
}
