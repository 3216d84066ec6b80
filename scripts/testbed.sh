#!/usr/bin/env bash
# testbed.sh: local OpenSSH servers that play rch workers, for the
# integration tests, the demo and the benchmarks.
#
#   testbed.sh up N DIR      start N sshd on 127.0.0.1 (stopping DIR's old ones
#                            first) and write DIR/{workers.toml,known_hosts,
#                            config.toml,env}; DIR then works as RCH_CONFIG_DIR
#   testbed.sh down DIR      stop every server of DIR
#   testbed.sh stop K DIR    kill worker wK's sshd and its live sessions, as if
#                            the host died (tests kill a worker mid-deploy)
#   testbed.sh start K DIR   start worker wK again on the same port and key
#
# Layout: DIR/wK/{sshd_config,sshd.pid,sshd.log,port,ssh_host_ed25519_key,root/},
# DIR/client/id_ed25519, DIR/authorized_keys. Servers are stopped by the pid
# in their pidfile only, never by name.
set -euo pipefail
umask 022

readonly ready_timeout_s=10
readonly stop_timeout_s=5

die() {
  echo "testbed: $*" >&2
  exit 1
}

usage() {
  echo "usage: testbed.sh up N DIR | down DIR | stop K DIR | start K DIR" >&2
  exit 2
}

find_sshd() {
  # sshd re-executes itself for every connection and insists on an absolute path.
  if [[ -x /usr/sbin/sshd ]]; then
    echo /usr/sbin/sshd
  elif command -v sshd >/dev/null 2>&1; then
    command -v sshd
  else
    die "sshd not found (install openssh-server)"
  fi
}

# Resolves DIR to an absolute physical path; `create` makes it if missing.
resolve_dir() {
  local dir=$1 create=$2
  if [[ $create == yes ]]; then
    mkdir -p -- "$dir"
  elif [[ ! -d $dir ]]; then
    return 1
  fi
  (cd -- "$dir" && pwd -P)
}

check_dir_name() {
  # The path is written unquoted into sshd_config and into TOML strings.
  if [[ $1 =~ [[:space:]\"\'\\#] ]]; then
    die "DIR must not contain whitespace, quotes, backslashes or '#': $1"
  fi
}

check_worker_number() {
  [[ $1 =~ ^[1-9][0-9]*$ ]] || die "worker number must be a positive integer, got '$1'"
}

# The user the workers log in as: root tests a dedicated unprivileged account
# (like a real fleet), anyone else tests as themselves (sshd cannot switch users).
test_user() {
  if ((EUID == 0)); then echo rchtest; else id -un; fi
}

# Creates rchtest once. Several builds may run `up` at the same time, and
# useradd/usermod fail while another holds the /etc/passwd lock, so retry.
ensure_rchtest() {
  local i
  for ((i = 0; i < 50; i++)); do
    id -u rchtest >/dev/null 2>&1 && break
    useradd --create-home --shell /bin/sh rchtest 2>/dev/null || sleep 0.1
  done
  id -u rchtest >/dev/null 2>&1 || die "cannot create user rchtest"
  # useradd leaves the password locked ('!'), and sshd with UsePAM no refuses
  # locked accounts even for key logins; '*' is "no password" but unlocked.
  for ((i = 0; i < 50; i++)); do
    [[ $(getent shadow rchtest | cut -d: -f2) == '!'* ]] || break
    usermod -p '*' rchtest 2>/dev/null || sleep 0.1
  done
  [[ $(getent shadow rchtest | cut -d: -f2) != '!'* ]] || die "cannot unlock user rchtest"
  local home
  home=$(getent passwd rchtest | cut -d: -f6)
  if [[ ! -d $home ]]; then
    mkdir -p -- "$home"
    chown rchtest: "$home"
  fi
}

# sshd reads authorized_keys as the login user and that user writes the
# worker root: every ancestor of DIR must be searchable by "others".
check_traversable() {
  local dir=$1 user=$2 path=$1 mode
  ((EUID == 0)) || return 0
  while [[ $path != / && -n $path ]]; do
    mode=$(stat -c '%a' -- "$path")
    if (((8#$mode & 1) == 0)); then
      die "$path (mode $mode) is not searchable by $user; sshd could not read $dir/authorized_keys. Use a DIR whose parents are o+x (e.g. under /tmp) or chmod o+x $path"
    fi
    path=$(dirname -- "$path")
  done
}

# Ports that something already listens on (IPv4 and IPv6), one per line.
listening_ports() {
  local f local_addr st rest
  for f in /proc/net/tcp /proc/net/tcp6; do
    [[ -r $f ]] || continue
    while read -r _ local_addr _ st rest; do
      [[ $st == 0A ]] && echo $((16#${local_addr##*:}))
    done < <(tail -n +2 "$f")
  done
}

declare -A taken_ports=()

picked_port=

# Sets picked_port to a port below the ephemeral range (so no outgoing
# connection holds it) that nobody listens on; a race lost to another process
# shows up as a bind failure and is retried. Not called in a subshell, so
# ports picked earlier in this run stay taken.
pick_port() {
  local p
  if ((${#taken_ports[@]} == 0)); then
    for p in $(listening_ports); do taken_ports[$p]=1; done
  fi
  while :; do
    p=$((20000 + (RANDOM * 32768 + RANDOM) % 12700))
    if [[ -z ${taken_ports[$p]:-} ]]; then
      taken_ports[$p]=1
      picked_port=$p
      return
    fi
  done
}

openssh_at_least() {
  # `sshd -V` is not in every release; `ssh -V` ships with it and has the same version.
  local v
  v=$(ssh -V 2>&1 || true)
  [[ $v =~ OpenSSH_([0-9]+)\.([0-9]+) ]] || return 1
  local major=${BASH_REMATCH[1]} minor=${BASH_REMATCH[2]}
  ((major > $1 || (major == $1 && minor >= $2)))
}

write_sshd_config() {
  local dir=$1 k=$2 port=$3 w=$1/w$2
  {
    echo "# Generated by scripts/testbed.sh for worker w$k; rewritten by every 'up'."
    echo "ListenAddress 127.0.0.1:$port"
    echo "PidFile $w/sshd.pid"
    echo "HostKey $w/ssh_host_ed25519_key"
    echo "UsePAM no"
    echo "PasswordAuthentication no"
    echo "KbdInteractiveAuthentication no"
    echo "PubkeyAuthentication yes"
    echo "AuthorizedKeysFile $dir/authorized_keys"
    echo "# StrictModes rejects a key file under a world-writable directory, and"
    echo "# DIR often lives in /tmp; this script creates every file with safe modes."
    echo "StrictModes no"
    echo "PermitRootLogin no"
    echo "Subsystem sftp /usr/lib/openssh/sftp-server"
    echo "LogLevel VERBOSE"
    echo "# rch opens many sessions at once (--parallel, stress runs, pools)."
    echo "MaxStartups 256"
    echo "MaxSessions 256"
    echo "MaxAuthTries 20"
    echo "PrintMotd no"
    echo "PrintLastLog no"
    echo "X11Forwarding no"
    echo "UseDNS no"
    echo "# No AcceptEnv: remote commands see the same environment on every run."
    echo "# Commands put in $w/shim shadow the system's in this worker's sessions (empty but for"
    echo "# tests, e.g. a uname that reports another architecture; tests/e2e/lib.sh reset_workers empties it)."
    echo "SetEnv PATH=$w/shim:/usr/local/bin:/usr/bin:/bin"
    if [[ $penalties == yes ]]; then
      echo "# Tests fail auth on purpose; OpenSSH >= 9.8 would then refuse 127.0.0.1."
      echo "PerSourcePenalties no"
    fi
  } >"$w/sshd_config"
}

# Starts wK's sshd in the background (it daemonizes after reading its
# config, then binds and writes its pidfile).
launch() {
  local dir=$1 k=$2 w=$1/w$2
  rm -f -- "$w/sshd.pid"
  # Errors from before sshd opens its -E log (bad flags) land in the same file;
  # the daemon must not inherit the DIR lock (fd 9).
  # shellcheck disable=SC2094
  if ! "$sshd" -f "$w/sshd_config" -E "$w/sshd.log" </dev/null >>"$w/sshd.log" 2>&1 9>&-; then
    die "sshd for w$k failed to start; $w/sshd.log ends with:
$(tail -n 15 -- "$w/sshd.log")"
  fi
}

pid_alive() {
  local pid=$1 state
  [[ -r /proc/$pid/stat ]] || return 1
  # A zombie has exited; it lingers only until its parent (maybe init) reaps it.
  state=$(sed -E 's/^[0-9]+ \(.*\) ([A-Za-z]).*/\1/' "/proc/$pid/stat" 2>/dev/null) || return 1
  [[ $state != Z ]]
}

# The pid of wK's running listener, or nothing. The pid must still be an sshd
# started with this worker's config: a stale pidfile may name a reused pid.
listener_pid() {
  local w=$1 pid
  [[ -s $w/sshd.pid ]] || return 0
  pid=$(<"$w/sshd.pid")
  [[ $pid =~ ^[0-9]+$ ]] || return 0
  pid_alive "$pid" || return 0
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$w/sshd_config" || return 0
  echo "$pid"
}

port_open() {
  (: <>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Waits until every listed worker accepts connections. With `retry`, a worker
# whose port was taken in the meantime is moved to a fresh port.
wait_ready() {
  local dir=$1 retry=$2
  shift 2
  local -a pending=("$@")
  local deadline=$((SECONDS + ready_timeout_s)) k w port
  while ((${#pending[@]} > 0)); do
    local -a still=()
    for k in "${pending[@]}"; do
      w=$dir/w$k
      port=$(<"$w/port")
      if [[ -n $(listener_pid "$w") ]] && port_open "$port"; then
        continue
      fi
      if grep -q 'Cannot bind any address' "$w/sshd.log" 2>/dev/null; then
        [[ $retry == yes ]] || die "w$k: port $port is taken by another process"
        pick_port
        port=$picked_port
        echo "$port" >"$w/port"
        write_sshd_config "$dir" "$k" "$port"
        : >"$w/sshd.log"
        launch "$dir" "$k"
      fi
      still+=("$k")
    done
    pending=("${still[@]}")
    ((${#pending[@]} == 0)) && break
    if ((SECONDS >= deadline)); then
      local msg="timed out after ${ready_timeout_s}s waiting for sshd to accept connections:"
      for k in "${pending[@]}"; do
        msg+=$'\n'"--- w$k (port $(<"$dir/w$k/port")), $dir/w$k/sshd.log:"$'\n'
        msg+=$(tail -n 10 -- "$dir/w$k/sshd.log" 2>/dev/null || echo "(no log)")
      done
      die "$msg"
    fi
    sleep 0.02
  done
}

# All descendants of a pid (session monitors, their children, user commands).
descendants() {
  local root=$1 pid ppid
  local -A kids=()
  while read -r pid ppid; do
    kids[$ppid]+="$pid "
  done < <(ps -e -o pid=,ppid=)
  local -a queue=("$root")
  while ((${#queue[@]} > 0)); do
    local p=${queue[0]}
    queue=("${queue[@]:1}")
    for pid in ${kids[$p]:-}; do
      echo "$pid"
      queue+=("$pid")
    done
  done
}

# Stops wK: the listener gets SIGTERM, its live sessions SIGKILL, so clients
# see the connection drop as they would when a host dies.
stop_worker() {
  local w=$1 pid
  pid=$(listener_pid "$w")
  if [[ -z $pid ]]; then
    rm -f -- "$w/sshd.pid"
    return 0
  fi
  local -a tree
  mapfile -t tree < <(descendants "$pid")
  kill -TERM "$pid" 2>/dev/null || true
  ((${#tree[@]} == 0)) || kill -KILL "${tree[@]}" 2>/dev/null || true
  local deadline=$((SECONDS + stop_timeout_s)) p
  local -a alive
  while :; do
    alive=()
    for p in "$pid" "${tree[@]}"; do
      pid_alive "$p" && alive+=("$p")
    done
    ((${#alive[@]} == 0)) && break
    if ((SECONDS >= deadline)); then
      kill -KILL "${alive[@]}" 2>/dev/null || true
      sleep 0.2
      for p in "${alive[@]}"; do
        pid_alive "$p" && die "$w: sshd pid $p does not exit"
      done
      break
    fi
    sleep 0.02
  done
  rm -f -- "$w/sshd.pid"
}

# Numbers K of every wK directory in DIR, ascending.
worker_numbers() {
  local d
  for d in "$1"/w*/; do
    d=${d%/}
    d=${d##*/w}
    [[ $d =~ ^[0-9]+$ ]] && echo "$d"
  done | sort -n
}

toml_workers() {
  local dir=$1 n=$2 user=$3 k
  echo "# Generated by scripts/testbed.sh up $n; rewritten by every 'up'."
  for ((k = 1; k <= n; k++)); do
    local tags='"testbed"'
    ((k % 2 == 0)) && tags+=', "gpu"'
    cat <<EOF

[[workers]]
id = "w$k"
host = "127.0.0.1"
user = "$user"
port = $(<"$dir/w$k/port")
identity_file = "$dir/client/id_ed25519"
root = "$dir/w$k/root"
tags = [$tags]
EOF
  done
}

cmd_up() {
  local n=$1 dir
  check_worker_number "$n"
  check_dir_name "$2"
  dir=$(resolve_dir "$2" yes)
  check_dir_name "$dir"
  lock_dir "$dir"
  local start=$EPOCHREALTIME user k
  user=$(test_user)
  if ((EUID == 0)); then
    ensure_rchtest
    # sshd chroots its pre-auth child here and refuses to start without it.
    mkdir -p /run/sshd
    chmod 755 /run/sshd
  fi
  chmod 755 "$dir"
  check_traversable "$dir" "$user"

  for k in $(worker_numbers "$dir"); do stop_worker "$dir/w$k"; done

  # Keys survive an `up` (only ports change); missing ones are made in parallel.
  local -a keygens=()
  mkdir -p "$dir/client"
  chmod 700 "$dir/client"
  if [[ ! -f $dir/client/id_ed25519 ]]; then
    ssh-keygen -q -t ed25519 -N '' -C rch-testbed-client -f "$dir/client/id_ed25519" &
    keygens+=($!)
  fi
  for ((k = 1; k <= n; k++)); do
    local w=$dir/w$k
    mkdir -p "$w"
    # Every `up` starts from empty worker roots: runs must not see each other's installs.
    rm -rf -- "$w/root"
    mkdir -m 755 "$w/root"
    # Owned by whoever runs the testbed, not by the login user: only tests put commands there.
    rm -rf -- "$w/shim"
    mkdir -m 755 "$w/shim"
    [[ $user == "$(id -un)" ]] || chown "$user:" "$w/root"
    if [[ ! -f $w/ssh_host_ed25519_key ]]; then
      ssh-keygen -q -t ed25519 -N '' -C "rch-testbed-w$k" -f "$w/ssh_host_ed25519_key" &
      keygens+=($!)
    fi
  done
  local pid
  for pid in "${keygens[@]}"; do
    wait "$pid" || die "ssh-keygen failed in $dir"
  done
  install -m 644 "$dir/client/id_ed25519.pub" "$dir/authorized_keys"

  for ((k = 1; k <= n; k++)); do
    pick_port
    echo "$picked_port" >"$dir/w$k/port"
    write_sshd_config "$dir" "$k" "$picked_port"
    : >"$dir/w$k/sshd.log"
    launch "$dir" "$k"
  done
  wait_ready "$dir" yes $(seq 1 "$n")

  local ports=() type key
  : >"$dir/known_hosts.tmp"
  for ((k = 1; k <= n; k++)); do
    ports+=("$(<"$dir/w$k/port")")
    read -r type key _ <"$dir/w$k/ssh_host_ed25519_key.pub"
    echo "[127.0.0.1]:${ports[-1]} $type $key" >>"$dir/known_hosts.tmp"
  done
  mv -f "$dir/known_hosts.tmp" "$dir/known_hosts"
  toml_workers "$dir" "$n" "$user" >"$dir/workers.toml"
  printf '[defaults]\nknown_hosts = "%s/known_hosts"\n' "$dir" >"$dir/config.toml"
  printf 'export RCH_CONFIG_DIR=%s\n' "$dir" >"$dir/env"

  local took
  took=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }')
  local noun=workers
  ((n == 1)) && noun=worker
  echo "testbed: $n $noun up in ${took}s as $user, ports ${ports[*]}; source $dir/env"
}

cmd_down() {
  local dir k count=0
  if ! dir=$(resolve_dir "$1" no); then
    echo "testbed: nothing to stop in $1 (no such directory)"
    return 0
  fi
  lock_dir "$dir"
  for k in $(worker_numbers "$dir"); do
    if [[ -n $(listener_pid "$dir/w$k") ]]; then
      count=$((count + 1))
    fi
    stop_worker "$dir/w$k"
  done
  echo "testbed: stopped $count workers in $dir"
}

worker_dir() {
  local k=$1 dir
  check_worker_number "$k"
  dir=$(resolve_dir "$2" no) || die "no testbed in $2"
  [[ -f $dir/w$k/sshd_config && -f $dir/w$k/port ]] || die "no worker w$k in $dir"
  echo "$dir"
}

cmd_stop() {
  local k=$1 dir
  dir=$(worker_dir "$1" "$2")
  lock_dir "$dir"
  stop_worker "$dir/w$k"
  echo "testbed: w$k stopped (port $(<"$dir/w$k/port"))"
}

cmd_start() {
  local k=$1 dir
  dir=$(worker_dir "$1" "$2")
  lock_dir "$dir"
  if [[ -n $(listener_pid "$dir/w$k") ]]; then
    echo "testbed: w$k already running (port $(<"$dir/w$k/port"))"
    return 0
  fi
  if ((EUID == 0)); then
    mkdir -p /run/sshd
    chmod 755 /run/sshd
  fi
  launch "$dir" "$k"
  wait_ready "$dir" no "$k"
  echo "testbed: w$k started (port $(<"$dir/w$k/port"))"
}

# Serializes commands on one DIR (two `up`s would fight over ports and pids).
lock_dir() {
  exec 9>"$1/.testbed.lock"
  flock 9
}

sshd=$(find_sshd)
penalties=no
if openssh_at_least 9 8; then penalties=yes; fi

case ${1:-} in
  up) (($# == 3)) || usage; cmd_up "$2" "$3" ;;
  down) (($# == 2)) || usage; cmd_down "$2" ;;
  stop) (($# == 3)) || usage; cmd_stop "$2" "$3" ;;
  start) (($# == 3)) || usage; cmd_start "$2" "$3" ;;
  *) usage ;;
esac
