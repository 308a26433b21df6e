#!/bin/sh
# Where `codexd version` spends its import time: `python -X importtime`, sorted by
# cumulative time, for the release (as install.sh installs it) and for the dev venv.
#
#   sh bench/importtime.sh [TOP]      # TOP entries of each (default 25)
#
# Installs this checkout's committed HEAD with install.sh into a temporary home (the
# real codex 0.169.0 behind the front, CODEXD_CODEX_SOURCE=path:, the `codexd` command
# in a temporary directory), starts its app-server so `version` does its real work
# (probe and managed `--version`), and stops everything it started before it exits.
# Note `-X importtime` covers only the CLI process: the `<managed binary> --version`
# child it runs for managedCodexVersion is another process, timed on the last lines.
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

real_codex="$(python3 "$here/real_codex.py")"
env -u CODEXD_CHANNEL -u CODEXD_PYTHON CODEX_HOME="$home" CODEXD_BIN_DIR="$root/bin" \
    CODEXD_CODEX_SOURCE="path:$real_codex" TMPDIR="$root" sh "$checkout/install.sh" 2>/dev/null
front="$home/packages/standalone/current/codex"
export CODEX_HOME="$home"
"$front" app-server daemon start >/dev/null

# The front execs `<python> -I -S <home>/packages/codexd/<release>/__main__.py "$@"`; run that
# directly with -X importtime.
read -r python <"$home/packages/standalone/python"
library="$(sed -n 's/^codexd=//p' "$home/packages/standalone/current/.codexd-release")"
library="$home/packages/codexd/$library"
main="$library/__main__.py"

# The TOP entries by cumulative time (with their own time), then the cumulative time
# of each top-level package imported at the top level (the release's entry point runs
# as a script, so its imports are at the top level there).
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

echo "== release ($library): python -X importtime, cumulative then self"
"$python" -I -S -X importtime "$main" app-server daemon version \
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
best "interpreter start (python -I -S -c pass)" "$python" -I -S -c pass
best "codexd --version (the installed command: sh, then python)" "$root/bin/codexd" --version
best "python -I -S <release>/__main__.py --version (no sh)" "$python" -I -S "$main" --version
best "front app-server daemon version" "$front" app-server daemon version
best "front --version (the real codex, which version runs)" "$front" --version
best "venv codexd --version" "$venv_codexd" --version
best "venv codexd app-server daemon version" "$venv_codexd" app-server daemon version
