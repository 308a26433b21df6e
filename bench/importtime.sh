#!/bin/sh
# Where `codexd version` spends its import time: `python -X importtime`, sorted by
# cumulative time, for the release (as install.sh installs it) and for the dev venv.
#
#   sh bench/importtime.sh [TOP]      # TOP entries of each (default 25)
#
# Builds this checkout's release into a temporary channel and home, starts its
# app-server so `version` does its real work (probe and managed `--version`), and
# stops everything it started before it exits. Note `-X importtime` covers only the
# CLI process: the `<managed binary> --version` child it runs for
# managedCodexVersion is a second interpreter start, timed on the last line.
set -eu

top="${1:-25}"
here="$(cd "$(dirname "$0")" && pwd)"
checkout="$(dirname "$here")"
venv_codexd="$checkout/.venv/bin/codexd"
venv_python="$checkout/.venv/bin/python"
root="$(mktemp -d "${TMPDIR:-/tmp}/codexd-importtime.XXXXXX")"
home="$root/home"

cleanup() {
    CODEX_HOME="$home" "$home/packages/standalone/current/codex" app-server daemon stop \
        >/dev/null 2>&1 || true
    python3 -c 'import sys; sys.path.insert(0, sys.argv[1])
from pathlib import Path
from procs import kill_home
kill_home(Path(sys.argv[2]))' "$here" "$home" || true
    rm -rf "$root"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

env -u CODEX_HOME python3 "$checkout/release/publish.py" --channel "$root/channel" >/dev/null
CODEXD_CHANNEL="$root/channel" CODEX_HOME="$home" sh "$checkout/install.sh" 2>/dev/null
release="$home/packages/standalone/current/codex"
export CODEX_HOME="$home"
"$release" app-server daemon start >/dev/null

# The sh boot of a --venv pex execs `<venv>/bin/python -I <venv> "$@"`; run that
# directly with -X importtime.
pex_venv="$(PEX_INTERPRETER=1 "$release" -c 'import sys; print(sys.prefix)')"

# The TOP entries by cumulative time (with their own time), then the cumulative time
# of each top-level package imported at the top level (the release's entry point runs
# through runpy, so its imports are at the top level there).
report() {
    sort -t'|' -k2 -n -r "$1" | awk -F'|' -v top="$top" '
        /import time:/ && $2 ~ /[0-9]/ {
            self = $1; gsub(/[^0-9]/, "", self)
            name = $3; gsub(/^ +/, "", name); indent = length($3) - length(name) - 1
            if (indent == 0) { split(name, parts, "."); total[parts[1]] += $2; all += $2 }
            if (shown < top) { printf "%9.1f ms %9.1f ms  %s\n", $2 / 1000, self / 1000, $3; shown++ }
        }
        END {
            printf "\n  all imports: %.1f ms; by top-level package:\n", all / 1000
            for (p in total) printf "%9.1f ms  %s\n", total[p] / 1000, p | "sort -rn | head -12"
        }'
}

echo "== release ($release): python -X importtime, cumulative then self"
"$pex_venv/bin/python" -I -X importtime "$pex_venv" app-server daemon version \
    2>"$root/release.txt" >/dev/null
report "$root/release.txt"

echo
echo "== venv ($venv_codexd): python -X importtime, cumulative then self"
"$venv_python" -X importtime "$venv_codexd" app-server daemon version \
    2>"$root/venv.txt" >/dev/null
report "$root/venv.txt"

echo
echo "== wall time of the pieces (best of 5)"
best() {
    python3 - "$@" <<'EOF'
import subprocess, sys, time
times = []
for _ in range(5):
    begin = time.perf_counter()
    subprocess.run(sys.argv[2:], capture_output=True, check=False)
    times.append(time.perf_counter() - begin)
print(f"{min(times) * 1000:9.1f} ms  {sys.argv[1]}")
EOF
}
best "interpreter start (python -I -c pass)" "$pex_venv/bin/python" -I -c pass
best "release --version (sh boot + pex + CLI imports)" "$release" --version
best "release venv python, pex bypassed, --version" "$pex_venv/bin/python" -I "$pex_venv/pex" --version
best "release app-server daemon version" "$release" app-server daemon version
best "venv codexd --version" "$venv_codexd" --version
best "venv codexd app-server daemon version" "$venv_codexd" app-server daemon version
