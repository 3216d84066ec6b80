#!/usr/bin/env bash
# make-releases-index.sh OUTROOT: gathers OUTROOT/*/release.json (written by
# make-release.sh) into OUTROOT/releases.json, the GitHub-style release list
# that `rch update` discovers: a JSON array, newest version first by semver
# precedence (a pre-release sorts below its release).
set -euo pipefail

die() {
  echo "make-releases-index: $*" >&2
  exit 1
}

(($# == 1)) || die "usage: make-releases-index.sh OUTROOT"
[[ -d $1 ]] || die "$1 is not a directory"

python3 - "$1" <<'PY'
import glob, json, os, re, sys

root = sys.argv[1]
SEMVER = re.compile(r"^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-([0-9A-Za-z.-]+))?$")

def fail(msg):
    sys.exit(f"make-releases-index: {msg}")

def precedence(tag, path):
    m = SEMVER.match(tag)
    if not m:
        fail(f"{path}: tag_name {tag!r} is not a semver version")
    core = tuple(int(x) for x in m.group(1, 2, 3))
    pre = m.group(4)
    if pre is None:
        return (core, 1, ())  # a release outranks every pre-release of it
    # Numeric identifiers rank below alphanumeric ones and compare as numbers.
    idents = tuple((0, int(i), "") if i.isdigit() else (1, 0, i) for i in pre.split("."))
    return (core, 0, idents)

releases = []
seen = {}
for path in sorted(glob.glob(os.path.join(root, "*", "release.json"))):
    try:
        with open(path, encoding="utf-8") as f:
            rel = json.load(f)
    except (OSError, ValueError) as e:
        fail(f"{path}: {e}")
    if not isinstance(rel, dict) or not isinstance(rel.get("tag_name"), str):
        fail(f"{path}: not a release object with a tag_name")
    tag = rel["tag_name"]
    if tag in seen:
        fail(f"{tag} appears twice: {seen[tag]} and {path}")
    seen[tag] = path
    releases.append((precedence(tag, path), rel))

if not releases:
    fail(f"no */release.json under {root}")
releases.sort(key=lambda r: r[0], reverse=True)
out = os.path.join(root, "releases.json")
tmp = out + ".tmp"
with open(tmp, "w", encoding="utf-8") as f:
    json.dump([r for _, r in releases], f, indent=2)
    f.write("\n")
os.replace(tmp, out)
print(f"make-releases-index: {len(releases)} releases -> {out}", file=sys.stderr)
PY
