#!/usr/bin/env bash
# E2E test of rch as a package: scripts/package.sh --no-build packages the
# build dir's binaries (no rebuild) into rch and rch-wkr .debs; they are
# unpacked into a temporary root with dpkg-deb -x and checked there:
#   Depends named from the real shared libraries; lintian clean (when
#   installed); the binaries run;
#   every man page renders with man -l, without warnings, and rch(1) names
#   every command and flag that --help shows; the bash completion function
#   itself (COMP_WORDS/COMP_CWORD) and the zsh one give commands, flags,
#   choices, worker ids and @tags; systemd-analyze verify accepts both units;
#   the units' ExecStart (Type=notify: READY=1 on a NOTIFY_SOCKET this test
#   listens on, path and abstract) and ExecStop (drain, wait for the running
#   build, exit) against a live rchd; a packaged rch refuses rch update (a
#   dpkg shim on PATH says the package owns it) unless --user-install.
set -euo pipefail
: "${RCH:?set RCH to the built rch}"
: "${RCH_SOURCE_DIR:?set RCH_SOURCE_DIR to the source tree}"
# shellcheck source=tests/e2e/lib.sh
. "$RCH_SOURCE_DIR/tests/e2e/lib.sh"
# shellcheck source=tests/e2e/rchd_lib.sh
. "$RCH_SOURCE_DIR/tests/e2e/rchd_lib.sh"

BUILD=$(dirname "$RCH")
# Short paths: Unix socket paths must fit in 108 bytes.
T=$(mktemp -d /tmp/rch-pkg-XXXXXX)
DAEMONS=()
cleanup() {
  local p
  for p in "${DAEMONS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$T" "$TMP"
}
trap cleanup EXIT
alive() { kill -0 "$1" 2>/dev/null && [[ $(ps -o stat= -p "$1" 2>/dev/null) != Z* ]]; }

echo "--- scripts/package.sh builds rch and rch-wkr from the build dir"
t0=$SECONDS
expect_exit 0 bash "$RCH_SOURCE_DIR/scripts/package.sh" --build-dir "$BUILD" --out "$T/dist" --no-build --no-lintian
version=$("$RCH" --version)
version=${version#rch }
arch=$(dpkg --print-architecture)
RCH_DEB=$T/dist/rch_${version}_${arch}.deb
WKR_DEB=$T/dist/rch-wkr_${version}_${arch}.deb
[[ $OUT == "$RCH_DEB"*"$WKR_DEB"* || $OUT == "$WKR_DEB"*"$RCH_DEB"* ]] || fail "package.sh printed: $OUT"
[[ -f $RCH_DEB && -f $WKR_DEB ]] || fail "no packages in $T/dist: $(ls "$T/dist")"
echo "    packaged in $((SECONDS - t0)) s"
# lintian (package.sh runs it too) when installed: slow, so beside the rest of the test.
LINTIAN=
if command -v lintian >/dev/null; then
  lintian --tag-display-limit 0 "$RCH_DEB" "$WKR_DEB" >"$T/lintian.out" 2>&1 &
  LINTIAN=$!
fi

echo "--- control: Depends from the real shared libraries"
deps=$(dpkg-deb -f "$RCH_DEB" Depends)
for lib in libc6 libssh libluajit libcurl libarchive libssl3 libspdlog libtomlplusplus "rch-wkr (= $version)"; do
  contains "$deps" "$lib"
done
wdeps=$(dpkg-deb -f "$WKR_DEB" Depends)
contains "$wdeps" libc6
# rch-wkr links no Lua, libssh or curl, and libstdc++ statically.
[[ $wdeps != *libssh* && $wdeps != *luajit* && $wdeps != *libstdc++* ]] || fail "rch-wkr depends on $wdeps"
[[ $(dpkg-deb -f "$RCH_DEB" Version) == "$version" ]] || fail "version $(dpkg-deb -f "$RCH_DEB" Version)"
files=$(dpkg-deb -c "$RCH_DEB")
for f in ./usr/bin/rch ./usr/bin/rchd ./usr/share/man/man1/rch.1.gz ./usr/share/man/man5/rch-config.5.gz \
  ./usr/share/man/man8/rchd.8.gz ./usr/share/bash-completion/completions/rch ./usr/share/zsh/vendor-completions/_rch \
  ./usr/lib/systemd/user/rchd.service ./usr/lib/systemd/system/rchd.service ./usr/share/doc/rch/copyright \
  ./usr/share/doc/rch/README.md ./usr/share/doc/rch/examples/hooks/pre_deploy_freeze.lua \
  ./usr/share/doc/rch/examples/strategies/canary.lua; do
  [[ $files == *" $f"* ]] || fail "rch package lacks $f: $files"
done
[[ $files != *rch-wkr* ]] || fail "rch-wkr files in the rch package: $files"
wfiles=$(dpkg-deb -c "$WKR_DEB")
for f in ./usr/bin/rch-wkr ./usr/share/man/man1/rch-wkr.1.gz ./usr/share/doc/rch-wkr/copyright; do
  [[ $wfiles == *" $f"* ]] || fail "rch-wkr package lacks $f: $wfiles"
done

echo "--- unpacked into a temporary root, the binaries run"
R=$T/root
dpkg-deb -x "$RCH_DEB" "$R"
dpkg-deb -x "$WKR_DEB" "$R"
for b in rch rchd rch-wkr; do
  [[ $("$R/usr/bin/$b" --version) == "$b $version" ]] || fail "$b --version: $("$R/usr/bin/$b" --version)"
done
file "$R/usr/bin/rch" | grep -q ', stripped' || fail "rch is not stripped: $(file "$R/usr/bin/rch")"

echo "--- every man page renders without warnings"
for page in man1/rch.1 man1/rch-wkr.1 man5/rch-config.5 man8/rchd.8; do
  MANWIDTH=100 man --warnings -l "$R/usr/share/man/$page.gz" >"$T/page.txt" 2>"$T/page.err" ||
    fail "man -l $page failed: $(cat "$T/page.err")"
  [[ ! -s $T/page.err ]] || fail "man -l $page warns: $(cat "$T/page.err")"
  [[ $(wc -l <"$T/page.txt") -gt 20 ]] || fail "$page is nearly empty: $(cat "$T/page.txt")"
done
MANWIDTH=200 man -l "$R/usr/share/man/man1/rch.1.gz" 2>/dev/null >"$T/rch.txt"
# Every command and every flag that --help shows is in rch(1).
cmds=("" fleet "fleet deploy" "fleet rollback" "fleet status" "fleet verify" "fleet drain" "fleet undrain"
  "fleet exec" "fleet copy" "fleet history" "fleet history show" "fleet audit" "fleet audit verify" "fleet stress"
  update config "config check" scripts "scripts list" "scripts show" run)
for c in "${cmds[@]}"; do
  # shellcheck disable=SC2086
  help=$("$RCH" $c --help)
  [[ -z $c ]] || grep -qF "rch $c" "$T/rch.txt" || fail "rch(1) has no section for 'rch $c'"
  while read -r flag; do
    grep -qF -- "$flag" "$T/rch.txt" || fail "rch(1) lacks $flag of 'rch $c --help'"
  done < <(grep -oE -- '--[a-z][a-z-]+' <<<"$help" | sort -u)
done
grep -qF -- "--user-install" "$T/rch.txt" || fail "rch(1) lacks update --user-install"
! grep -q "__man\|__complet" "$T/rch.txt" || fail "rch(1) shows the hidden commands"
man -l "$R/usr/share/man/man5/rch-config.5.gz" 2>/dev/null >"$T/config.txt"
# Every key config.toml accepts, with its default (from the parser's own table).
for key in parallel connect_timeout host_key_policy min_disk_mb keep_versions percent minisign_pubkey rotate_mb \
  keep_deployments connect_retry_delay; do
  grep -q "^ *$key = " "$T/config.txt" || fail "rch-config(5) lacks $key: $(cat "$T/config.txt")"
done
grep -q 'parallel = 4$' "$T/config.txt" || fail "rch-config(5) does not give parallel's default"
grep -q 'host_key_policy = "strict"$' "$T/config.txt" || fail "rch-config(5) lacks host_key_policy's default"
man -l "$R/usr/share/man/man8/rchd.8.gz" 2>/dev/null | grep -q 'rchd stop' || fail "rchd(8) lacks rchd stop"

echo "--- bash completion: commands, flags, choices, worker ids and tags"
CFG=$T/config
mkdir -p "$CFG"
cat >"$CFG/workers.toml" <<'EOF'
[[workers]]
id = "alpha"
host = "127.0.0.1"
tags = ["gpu", "big"]

[[workers]]
id = "beta"
host = "127.0.0.1"
tags = ["gpu"]
EOF
# complete WORD…: COMPREPLY of the bash function for the words, the last one being completed.
complete_bash() {
  RCH_CONFIG_DIR=$CFG bash -c '
    source "$1"; shift
    COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1))
    _rch
    printf "%s\n" "${COMPREPLY[@]}"' _ "$R/usr/share/bash-completion/completions/rch" "$R/usr/bin/rch" "$@"
}
has_all() {
  local got=$1 w
  shift
  for w in "$@"; do grep -qxF -- "$w" <<<"$got" || fail "completion lacks '$w'; got: ${got//$'\n'/ }"; done
}
got=$(complete_bash "")
has_all "$got" fleet update config scripts run
! grep -q '^__' <<<"$got" || fail "the hidden commands are offered: $got"
got=$(complete_bash fleet "")
has_all "$got" deploy rollback status verify drain undrain exec copy history audit stress
got=$(complete_bash fleet deploy --)
has_all "$got" --worker --exclude --canary --dry-run --resume --json --verbose --script-dir
got=$(complete_bash -v fleet status --w)
has_all "$got" --worker --watch
got=$(complete_bash update --channel "")
[[ $(sort <<<"$got" | tr '\n' ' ') == "beta nightly stable " ]] || fail "--channel offers: $got"
got=$(complete_bash fleet status --worker "")
has_all "$got" alpha beta @gpu @big @failed
got=$(complete_bash fleet drain --exclude @g)
[[ $got == "@gpu" ]] || fail "--exclude @g offers: $got"
got=$(complete_bash fleet exec --worker alpha,b)
[[ $got == "alpha,beta" ]] || fail "--worker alpha,b offers: $got"
got=$(complete_bash fleet deploy --worker alpha --dry)
[[ $got == "--dry-run" ]] || fail "a flag after --worker VALUE: $got"
mkdir -p "$T/cwd/subdir" && touch "$T/cwd/file.lua"
got=$(cd "$T/cwd" && complete_bash run f)
[[ $got == "file.lua" ]] || fail "rch run FILE offers: $got"

echo "--- zsh completion: the same tables through compadd"
complete_zsh() {
  RCH_CONFIG_DIR=$CFG zsh -f -c '
    compadd() { while [[ $1 == -* && $1 != -- ]]; do shift; done; [[ $1 == -- ]] && shift; printf "%s\n" "$@"; }
    compset() { return 1; }
    _files() { echo FILES; }
    file=$1
    shift
    words=("$@"); CURRENT=$#
    source "$file"' _ "$R/usr/share/zsh/vendor-completions/_rch" "$R/usr/bin/rch" "$@" 2>"$T/zsh.err" |
    grep -v '^$' || true
  [[ ! -s $T/zsh.err ]] || fail "zsh completion errors: $(cat "$T/zsh.err")"
}
has_all "$(complete_zsh fleet "")" deploy rollback status exec copy
has_all "$(complete_zsh fleet deploy --)" --worker --canary --verbose
has_all "$(complete_zsh fleet status --worker "")" alpha beta @gpu @big
has_all "$(complete_zsh update --channel "")" stable beta nightly
[[ $(complete_zsh run "") == FILES ]] || fail "zsh: rch run FILE does not complete files"

echo "--- systemd-analyze verify accepts both units (ExecStart paths in the unpacked root)"
for scope in user system; do
  mkdir -p "$T/units/$scope"
  sed "s|/usr/bin/rchd|$R/usr/bin/rchd|g" "$R/usr/lib/systemd/$scope/rchd.service" >"$T/units/$scope/rchd.service"
  grep -q "^ExecStart=$R/usr/bin/rchd run --foreground" "$T/units/$scope/rchd.service" ||
    fail "$scope unit's ExecStart: $(grep ExecStart "$T/units/$scope/rchd.service")"
  flags=()
  [[ $scope == user ]] && flags=(--user)
  # Documentation=man:… is looked up with man: MANPATH points at the unpacked pages.
  MANPATH=$R/usr/share/man XDG_RUNTIME_DIR=$T systemd-analyze "${flags[@]}" verify "$T/units/$scope/rchd.service" \
    >"$T/verify.out" 2>&1 || fail "systemd-analyze verify ($scope): $(cat "$T/verify.out")"
  ! grep -q "rchd.service" "$T/verify.out" || fail "systemd-analyze verify ($scope) complains: $(cat "$T/verify.out")"
  for opt in Type=notify Restart=on-failure NoNewPrivileges=yes; do
    grep -qx "$opt" "$T/units/$scope/rchd.service" || fail "$scope unit lacks $opt"
  done
done
for opt in ProtectSystem=full PrivateTmp=yes ProtectKernelModules=yes; do
  grep -qx "$opt" "$T/units/system/rchd.service" || fail "system unit lacks $opt"
done

# unit_line SCOPE KEY: the command of the unit's KEY= line, split into words, paths in $R, root in $T.
unit_line() {
  sed -n "s|^$2=||p" "$T/units/$1/rchd.service" | sed "s|/var/lib/rchd|$T/var/lib/rchd|g"
}

# (The file defines _rch and calls it, as compinit's autoload does on first use.)

# A datagram listener on NOTIFY_SOCKET (a path, or "@name" for an abstract
# socket) that records each message, and on READY=1 checks that rchd's socket
# already answers (readiness means: clients can connect now).
listen_notify() {
  python3 - "$1" "$2" "$3" <<'PY' &
import os, socket, sys, time
addr, out, rchd_sock = sys.argv[1:]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\0" + addr[1:] if addr.startswith("@") else addr)
open(out + ".bound", "w").close()
s.settimeout(30)
with open(out, "w") as f:
    while True:
        try:
            msg = s.recv(4096).decode()
        except socket.timeout:
            break
        for line in msg.split("\n"):
            if line == "READY=1":
                c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    c.connect(rchd_sock)
                    line += " answering"
                except OSError as e:
                    line += " not-answering:%s" % e
            f.write(line + "\n")
            f.flush()
        if "STOPPING=1" in msg:
            break
PY
  LISTENER=$!
  wait_until 10 test -e "$2.bound"
}

# run_unit SCOPE NOTIFY_SOCKET ROOT (the daemon's root, where its socket is): ExecStart as systemd runs a Type=notify
# service (in the background, NOTIFY_SOCKET set), then a build, then ExecStop.
run_unit() {
  local scope=$1 notify=$2 sock=$3/rchd.sock start stop
  read -r -a start <<<"$(unit_line "$scope" ExecStart)"
  read -r -a stop <<<"$(unit_line "$scope" ExecStop)"
  listen_notify "$notify" "$T/notify.$scope" "$sock"
  RCH_HOME=$T/home NOTIFY_SOCKET=$notify INVOCATION_ID=0123 "${start[@]}" 2>"$T/rchd.$scope.log" &
  local main=$!
  DAEMONS+=("$main")
  wait_until 10 grep -q "^READY=1" "$T/notify.$scope"
  grep -qx "READY=1 answering" "$T/notify.$scope" || fail "READY=1 before the socket answered: $(cat "$T/notify.$scope")"
  grep -q "^STATUS=listening on $sock" "$T/notify.$scope" || fail "no STATUS: $(cat "$T/notify.$scope")"
  [[ $(field "$(rchd_request "$sock" '{"cmd":"status"}')" pid) == "$main" ]] || fail "the main process is not rchd"
  # A build that runs until the test creates release.$scope: stop must wait
  # for it, refuse new builds meanwhile, then exit.
  local reply
  reply=$(rchd_request "$sock" '{"cmd":"build","argv":["sh","-c","while [ ! -e release.'"$scope"' ]; do sleep 0.05; done; echo done > build.'"$scope"'"],"cwd":"'"$T"'"}')
  [[ $(field "$reply" ok) == true ]] || fail "build not started: $reply"
  RCH_HOME=$T/home "${stop[@]}" 2>"$T/stop.$scope.err" &
  local stopper=$!
  wait_until 20 grep -q "draining rchd (pid $main): 1 build running" "$T/stop.$scope.err"
  reply=$(rchd_request "$sock" '{"cmd":"build","argv":["true"]}')
  [[ $reply == *'"error":"draining"'* ]] || fail "a build was accepted while stopping: $reply"
  sleep 1
  alive "$stopper" || fail "ExecStop returned while the build still ran: $(cat "$T/stop.$scope.err")"
  alive "$main" || fail "rchd exited while its build still ran"
  touch "$T/release.$scope"
  wait "$stopper" || fail "ExecStop exited $?: $(cat "$T/stop.$scope.err")"
  [[ -f $T/build.$scope ]] || fail "ExecStop returned before the build ended"
  wait "$main" || fail "rchd exited $? after ExecStop: $(cat "$T/rchd.$scope.log")"
  wait "$LISTENER" || true
  grep -qx "STOPPING=1" "$T/notify.$scope" || fail "no STOPPING=1: $(cat "$T/notify.$scope")"
  [[ ! -e $sock ]] || fail "socket left behind"
}

echo "--- user unit: READY=1 on an abstract NOTIFY_SOCKET, ExecStop drains and waits"
run_unit user "@rch-pkg-test-$$" "$T/home"
echo "--- system unit: READY=1 on a path NOTIFY_SOCKET, ExecStop drains and waits"
mkdir -p "$T/var/lib/rchd"
run_unit system "$T/notify.sock" "$T/var/lib/rchd"

echo "--- rchd stop: the timeout passes with a build still running: stop anyway"
"$R/usr/bin/rchd" run --root "$T/home" || fail "rchd run failed"
pid=$(field "$(rchd_request "$T/home/rchd.sock" '{"cmd":"status"}')" pid)
DAEMONS+=("$pid")
rchd_request "$T/home/rchd.sock" '{"cmd":"build","argv":["sleep","5"]}' >/dev/null
expect_exit 0 "$R/usr/bin/rchd" stop --root "$T/home" --timeout 1
contains "$ERR" "1 build still running after 1s; stopping rchd (pid $pid) anyway"
wait_until 5 bash -c "! kill -0 $pid 2>/dev/null"
expect_exit 0 "$R/usr/bin/rchd" stop --root "$T/home"
contains "$ERR" "nothing to stop"
expect_exit 2 "$R/usr/bin/rchd" stop --timeout x
contains "$ERR" "--timeout needs a whole number of seconds"

echo "--- a packaged rch leaves updates to the package manager"
mkdir -p "$T/shim"
# dpkg -S claims the unpacked rch for the package rch; anything else goes to the real dpkg.
cat >"$T/shim/dpkg" <<EOF
#!/bin/sh
if [ "\$1" = -S ] && [ "\$2" = "$R/usr/bin/rch" ]; then echo "rch: \$2"; exit 0; fi
exec /usr/bin/dpkg "\$@"
EOF
chmod +x "$T/shim/dpkg"
export RCH_HOME=$T/uhome RCH_CONFIG_DIR=$CFG RCH_STATE_DIR=$T/state RCH_CACHE_DIR=$T/cache RCH_DATA_DIR=$T/data
export RCH_RELEASE_URL=http://127.0.0.1:9/releases.json
for args in "--yes" "--rollback --yes" "--dry-run"; do
  # shellcheck disable=SC2086
  PATH=$T/shim:$PATH expect_exit 1 "$R/usr/bin/rch" update $args
  contains "$ERR" "$R/usr/bin/rch belongs to the Debian package rch: update it with the package manager"
  contains "$ERR" "rch update --user-install"
done
[[ ! -e $T/uhome ]] || fail "a refused update touched $T/uhome: $(find "$T/uhome")"
# --check only reads: allowed (and fails here at the unreachable release list).
PATH=$T/shim:$PATH expect_exit 1 "$R/usr/bin/rch" update --check
[[ $ERR != *"belongs to the Debian package"* ]] || fail "--check was refused: $ERR"
# --user-install goes ahead (to the unreachable release list); so does an rch no package owns.
PATH=$T/shim:$PATH expect_exit 1 "$R/usr/bin/rch" update --user-install --yes
[[ $ERR != *"belongs to the Debian package"* ]] || fail "--user-install was refused: $ERR"
contains "$ERR" "127.0.0.1:9"
expect_exit 1 "$R/usr/bin/rch" update --yes
[[ $ERR != *"belongs to the Debian package"* ]] || fail "an rch no package owns was refused: $ERR"
if [[ -n $LINTIAN ]]; then
  echo "--- lintian finds nothing"
  wait "$LINTIAN" || fail "lintian: $(cat "$T/lintian.out")"
  ! grep -qE '^[EW]: ' "$T/lintian.out" || fail "lintian: $(cat "$T/lintian.out")"
else
  echo "--- (lintian is not installed: not run)"
fi
echo "packaging_test: all passed"
