#!/bin/sh
# install.sh: install codexd and the real codex into $CODEX_HOME/packages (CODEX_HOME
# defaults to ~/.codex); the managed binary is $CODEX_HOME/packages/standalone/current/codex.
#
#   sh install.sh [--force]
#   curl -fsSL https://<channel>/install.sh | sh
#
# codexd comes from, first match wins:
#   1. CODEXD_CHANNEL: a channel directory or an https:// URL;
#   2. run as a file inside a codexd checkout: a release built from its committed HEAD;
#   3. the source recorded by the last install, packages/standalone/source.
# A channel holds install.sh, latest (the newest release's name), SHA256SUMS and
# artifacts/<release>; the artifact is verified against SHA256SUMS.
# codex comes from CODEXD_CODEX_SOURCE (npm:<version or dist-tag>, path:<file> or
# reference), else the source recorded by the last install, else npm:latest when npm
# is on PATH, else codexd's reference app-server.
# codexd runs with python3 (3.11 or newer): CODEXD_PYTHON, else the interpreter the
# last install recorded, else python3 on PATH.
#
# This script fetches and verifies codexd's release; the installer inside that release
# (supervisor/install.py, run with the chosen python3) does the rest under
# packages/standalone/install.lock: fetches codex, builds the release only when codex
# or codexd is new, checks it runs, switches `current` atomically, keeps the previous
# release for rollback and prunes older ones. Nothing is changed when anything fails.
set -eu

say() { printf 'install.sh: %s\n' "$*" >&2; }
die() {
	say "error: $*"
	exit 1
}
have() { command -v "$1" >/dev/null 2>&1; }

force=
for arg in "$@"; do
	case $arg in
	--force) force=--force ;;
	-h | --help)
		say "usage: sh install.sh [--force]   (CODEXD_CHANNEL=<directory or https:// URL>, CODEXD_CODEX_SOURCE=npm:<version|tag>|path:<file>|reference)"
		exit 0
		;;
	*) die "unknown argument '$arg' (usage: sh install.sh [--force])" ;;
	esac
done

umask 022
unset CDPATH
home=${CODEX_HOME:-${HOME:?HOME is not set}/.codex}
case $home in /*) ;; *) home=$(pwd)/$home ;; esac
standalone=$home/packages/standalone

tmp=
cleanup() { [ -z "$tmp" ] || rm -rf "$tmp"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' HUP TERM
# The temp dir is named for this process, so a later run can remove what a SIGKILLed
# one (which no trap sees) left behind.
uid=$(id -u)
for stale in "${TMPDIR:-/tmp}"/codexd-install.*.*; do
	[ -d "$stale" ] && [ -n "$(find "$stale" -maxdepth 0 -user "$uid" 2>/dev/null)" ] || continue
	pid=${stale##*/codexd-install.}
	pid=${pid%%.*}
	case $pid in '' | *[!0-9]*) continue ;; esac
	kill -0 "$pid" 2>/dev/null || rm -rf "$stale"
done
tmp=$(mktemp -d "${TMPDIR:-/tmp}/codexd-install.$$.XXXXXX") || die "cannot create a temporary directory"

# sha256_of FILE: sets $digest to FILE's sha256 in lowercase hex.
sha256_of() {
	if have sha256sum; then
		digest=$(sha256sum <"$1") || die "cannot checksum $1"
	elif have shasum; then
		digest=$(shasum -a 256 <"$1") || die "cannot checksum $1"
	else
		digest=$("$python" -c 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())' <"$1") ||
			die "cannot checksum $1"
	fi
	digest=${digest%% *}
}

# choose_python: sets $python to the interpreter itself (not a version manager's shim
# nor a venv's link: the release runs it by this path at every call); fails when there
# is none, or it is older than 3.11 (the pinned dependencies need 3.11).
choose_python() {
	python=${CODEXD_PYTHON:-}
	if [ -z "$python" ] && [ -f "$standalone/python" ]; then
		read -r python <"$standalone/python" || python=
		[ -x "$python" ] || python=
	fi
	if [ -z "$python" ]; then
		python=$(command -v python3 2>/dev/null) || python=
	fi
	if [ -z "$python" ]; then
		python_problem="no python3 on PATH"
		return 1
	fi
	found=$python
	python=$("$found" -c 'import os, sys
if sys.version_info < (3, 11):
    sys.exit("it is Python %d.%d, older than 3.11" % sys.version_info[:2])
print(os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable))' 2>"$tmp/python.err") || {
		python_problem="$found does not run as Python 3.11 or newer: $(sed -n '$p' "$tmp/python.err")"
		return 1
	}
}

# check_codex_source DIR: CODEXD_CODEX_SOURCE's syntax, with the parser of the codexd in
# DIR, so that a typo fails before a build (a codexd without the parser: not checked here,
# the installer checks it).
check_codex_source() {
	[ -n "${CODEXD_CODEX_SOURCE:-}" ] || return 0
	# shellcheck disable=SC2016 # Python, not sh
	"$python" -I -S -c 'import sys
sys.path.insert(0, sys.argv[1])
try:
    from supervisor.codex_source import SourceError, parse_source
except ImportError:
    sys.exit(0)
try:
    parse_source(sys.argv[2])
except SourceError as error:
    sys.exit("install.sh: error: CODEXD_CODEX_SOURCE: %s" % error)' "$1" "$CODEXD_CODEX_SOURCE" || exit 1
}

# is_checkout DIR: a codexd checkout install.sh can build a release from.
is_checkout() { [ -f "$1/release/publish.py" ] && [ -d "$1/supervisor" ]; }

# --- Where codexd comes from --------------------------------------------------
source_kind=
source_location=
if [ -n "${CODEXD_CHANNEL:-}" ]; then
	source_kind=channel
	source_location=$CODEXD_CHANNEL
else
	# Run as a file ($0 is this script) or piped ($0 is the shell, no checkout beside it).
	if [ -f "$0" ]; then
		script_dir=$(cd "$(dirname "$0")" && pwd) || script_dir=
		if [ -n "$script_dir" ] && is_checkout "$script_dir"; then
			source_kind=checkout
			source_location=$script_dir
		fi
	fi
	if [ -z "$source_kind" ] && [ -f "$standalone/source" ]; then
		read -r source_kind source_location <"$standalone/source" || :
		case $source_kind in
		channel | checkout) [ -n "$source_location" ] || die "$standalone/source names no location" ;;
		*) die "$standalone/source is not 'channel <location>' or 'checkout <path>': set CODEXD_CHANNEL" ;;
		esac
	fi
	[ -n "$source_kind" ] ||
		die "no release source: set CODEXD_CHANNEL to a channel (a directory or an https:// URL), or run install.sh from a codexd checkout"
fi

if [ "$source_kind" = checkout ]; then
	is_checkout "$source_location" || die "$source_location is not a codexd checkout (no release/publish.py)"
	choose_python || die "python3 is needed (3.11 or newer) to build a release from $source_location: $python_problem"
	# The committed HEAD only: the checkout is also the updater's source, and an edit in
	# progress must not be rolled out by the next pass.
	build_dir=$source_location
	if have git && prefix=$(git -C "$source_location" rev-parse --show-prefix 2>/dev/null) &&
		git -C "$source_location" cat-file -e "HEAD:${prefix}release/publish.py" 2>/dev/null; then
		commit=$(git -C "$source_location" rev-parse --short HEAD)
		git -C "$source_location" archive --format=tar -o "$tmp/head.tar" "HEAD:$prefix" ||
			die "cannot export HEAD of $source_location"
		mkdir "$tmp/head"
		tar -x -f "$tmp/head.tar" -C "$tmp/head" || die "cannot unpack HEAD of $source_location"
		build_dir=$tmp/head
		changed=$(git -C "$source_location" status --porcelain -- . 2>/dev/null | wc -l | tr -d ' ')
		note=
		[ "$changed" = 0 ] || note="; $changed uncommitted or untracked paths are left out"
		say "building codexd from the committed HEAD ($commit) of $source_location$note"
	else
		say "building codexd from $source_location (not a git checkout: its files as they are)"
	fi
	check_codex_source "$build_dir"
	"$python" "$build_dir/release/publish.py" --channel "$tmp/channel" >"$tmp/built" ||
		die "building a release from $source_location failed (see above)"
	channel=$tmp/channel
	channel_kind=dir
else
	case $source_location in
	https://*)
		channel=${source_location%/}
		channel_kind=url
		;;
	http://*) die "refusing the plain http channel $source_location: use an https:// URL or a directory" ;;
	*://*) die "unsupported channel $source_location: use an https:// URL or a directory" ;;
	*)
		[ -d "$source_location" ] || die "channel directory $source_location does not exist"
		channel=$(cd "$source_location" && pwd) || die "cannot enter the channel directory $source_location"
		channel_kind=dir
		;;
	esac
	source_location=$channel
fi

# fetch PATH DEST: the channel's file PATH into DEST.
fetch() {
	if [ "$channel_kind" = dir ]; then
		[ -f "$channel/$1" ] || die "channel $channel has no $1"
		cp "$channel/$1" "$2" || die "cannot copy $channel/$1"
	elif have curl; then
		curl -fsSL --proto '=https' --proto-redir '=https' -o "$2" "$channel/$1" ||
			die "cannot download $channel/$1"
	elif have wget; then
		wget -q --https-only -O "$2" "$channel/$1" || die "cannot download $channel/$1"
	else
		die "need curl or wget to download from $channel"
	fi
}

# --- Which codexd release -------------------------------------------------------
fetch latest "$tmp/latest"
release=$(tr -d ' \t\r\n' <"$tmp/latest")
case $release in
'') die "channel $channel: latest is empty" ;;
.* | *[!A-Za-z0-9._-]*) die "channel $channel: latest names an invalid release '$release'" ;;
esac

fetch SHA256SUMS "$tmp/SHA256SUMS"
expected=$(awk -v path="artifacts/$release" '$2 == path || $2 == "*" path { print $1; exit }' "$tmp/SHA256SUMS" |
	tr 'A-F' 'a-f')
case $expected in
'') die "channel $channel: SHA256SUMS has no checksum for artifacts/$release" ;;
*[!0-9a-f]*) die "channel $channel: SHA256SUMS has a malformed checksum for artifacts/$release" ;;
esac
[ "${#expected}" -eq 64 ] || die "channel $channel: SHA256SUMS has a malformed checksum for artifacts/$release"

if [ -z "${python:-}" ]; then
	choose_python ||
		die "release $release does not run: $python_problem (codexd runs with python3, 3.11 or newer: install it, or set CODEXD_PYTHON)"
fi

# --- Download and verify (unless this codexd release is unpacked here already) ---
store=$home/packages/codexd/$release
if [ -f "$store/.codexd-artifact" ] && grep -qxF "sha256=$expected" "$store/.codexd-artifact"; then
	artifact=$store
else
	fetch "artifacts/$release" "$tmp/artifact"
	sha256_of "$tmp/artifact"
	[ "$digest" = "$expected" ] ||
		die "checksum mismatch for $channel/artifacts/$release: expected sha256 $expected, got $digest"
	artifact=$tmp/artifact
fi

# --- The installer inside the release does the rest ------------------------------
# shellcheck disable=SC2016 # Python, not sh
installer='import sys
sys.path.insert(0, sys.argv[1])
try:
    from supervisor.install import main
except ImportError as error:
    sys.exit("install.sh: error: %s has no installer this install.sh can run (%s): publish it with a current release/publish.py" % (sys.argv[1], error))
sys.exit(main(sys.argv[1:]))'
# $force is empty or --force.
# shellcheck disable=SC2086
"$python" -I -S -c "$installer" "$artifact" --home "$home" --release "$release" --sha256 "$expected" \
	--source "$source_kind $source_location" --scratch "$tmp" $force
