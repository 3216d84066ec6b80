#!/usr/bin/env bash
# scripts/coverage.sh [--report-only] [BUILD_DIR]: line coverage over the whole test suite
# (ctest, the update and release tests included), per file and in total:
#   C++ : a --coverage build (gcov), summed by lcov over core/, lua/bind/, cli/;
#   Lua : the engine's line hook (RCH_LUA_COVERAGE, lua/rch/coverage.lua) over
#         every bundled file (lua/rch, strategies, hooks); a file never loaded
#         counts 0 %, executable lines come from LuaJIT's own line info.
# Not part of the default test command (it rebuilds everything, and Lua runs
# without the JIT). Writes BUILD_DIR/coverage.txt; exits 1 when a total is
# under 80 %. --report-only reports the data of the last run again.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
report_only=no
if [[ ${1:-} == --report-only ]]; then report_only=yes; shift; fi
build=${1:-$root/build-cov}
command -v lcov >/dev/null || apt-get install -y -qq lcov >/dev/null
command -v luajit >/dev/null || apt-get install -y -qq luajit >/dev/null

tests_ok=yes
if [[ $report_only == no ]]; then
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS="--coverage" \
  -DCMAKE_EXE_LINKER_FLAGS="--coverage" >/dev/null
cmake --build "$build"
find "$build" -name '*.gcda' -delete
rm -rf "$build/lua-cov" && mkdir -p "$build/lua-cov"
# A failing test still leaves its coverage: report it, and say so.
RCH_LUA_COVERAGE="$build/lua-cov" ctest --test-dir "$build" --timeout 900 -j"$(nproc)" >"$build/ctest.log" 2>&1 ||
  tests_ok=no
fi

lcov --quiet --capture --directory "$build" --output-file "$build/cpp-all.info" 2>/dev/null
lcov --quiet --extract "$build/cpp-all.info" "$root/core/*" "$root/lua/bind/*" "$root/cli/*" \
  --output-file "$build/cpp.info" 2>/dev/null

python3 - "$root" "$build" <<'EOF_PY'
import glob, os, re, subprocess, sys
root, build = sys.argv[1], sys.argv[2]

def cpp_files():
    files, cur = {}, None
    for line in open(os.path.join(build, "cpp.info")):
        line = line.strip()
        if line.startswith("SF:"):
            cur = os.path.relpath(line[3:], root); files.setdefault(cur, [0, 0])
        elif line.startswith("LF:"):
            files[cur][1] += int(line[3:])
        elif line.startswith("LH:"):
            files[cur][0] += int(line[3:])
    return files

# Executable lines of a Lua file: the lines LuaJIT's bytecode maps to.
EXECUTABLE = r'''
local jutil = require "jit.util"
local fn = assert(loadfile(arg[1]))
local lines = {}
local function walk(f)
  local info = jutil.funcinfo(f)
  for pc = 1, info.bytecodes - 1 do
    local l = jutil.funcinfo(f, pc).currentline
    if l and l > 0 then lines[l] = true end
  end
  local k = -1
  while true do
    local c = jutil.funck(f, k)
    if c == nil then break end
    if type(c) == "proto" then walk(c) end
    k = k - 1
  end
end
walk(fn)
for l in pairs(lines) do print(l) end
'''

def lua_files():
    hit = {}
    for path in glob.glob(os.path.join(build, "lua-cov", "*.cov")):
        for line in open(path, errors="replace"):
            m = re.match(r"^@builtin/(.+):(\d+)$", line.strip())
            if m:
                hit.setdefault(m.group(1), set()).add(int(m.group(2)))
    files = {}
    sources = glob.glob(os.path.join(root, "lua/rch/**/*.lua"), recursive=True) + \
        glob.glob(os.path.join(root, "strategies/*.lua")) + glob.glob(os.path.join(root, "hooks/*.lua"))
    for path in sorted(sources):
        rel = os.path.relpath(path, root)
        name = rel[len("lua/"):] if rel.startswith("lua/") else rel  # the chunk name: builtin/<name>
        out = subprocess.run(["luajit", "-", path], input=EXECUTABLE, capture_output=True, text=True,
                             check=True).stdout
        lines = {int(x) for x in out.split()}
        files[rel] = [len(lines & hit.get(name, set())), len(lines)]
    return files

def report(title, files):
    out = [f"{title}: per file (lines hit / executable)"]
    for f in sorted(files):
        h, n = files[f]
        out.append(f"  {100.0 * h / n if n else 100.0:5.1f}%  {h:5d}/{n:<5d} {f}")
    h = sum(v[0] for v in files.values()); n = sum(v[1] for v in files.values())
    total = 100.0 * h / n if n else 100.0
    out.append(f"{title} total: {total:.1f}% ({h} of {n} lines)")
    return "\n".join(out), total

cpp_text, cpp_total = report("C++", cpp_files())
lua_text, lua_total = report("Lua", lua_files())
text = cpp_text + "\n\n" + lua_text + "\n"
open(os.path.join(build, "coverage.txt"), "w").write(text)
print(text)
print(f"C++ {cpp_total:.1f}%, Lua {lua_total:.1f}% (target 80 % each); details in {build}/coverage.txt")
sys.exit(0 if cpp_total >= 80 and lua_total >= 80 else 1)
EOF_PY
status=$?
[[ $tests_ok == yes ]] || echo "note: some tests failed during the coverage run (see $build/ctest.log)" >&2
exit $status
