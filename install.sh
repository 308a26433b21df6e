#!/bin/sh
# install.sh: install the newest codexd release of a channel as the managed binary,
# $CODEX_HOME/packages/standalone/current/codex (CODEX_HOME defaults to ~/.codex).
#
#   sh install.sh [--force]
#   curl -fsSL https://<channel>/install.sh | sh
#
# Where releases come from, first match wins:
#   1. CODEXD_CHANNEL: a channel directory or an https:// URL;
#   2. run as a file inside a codexd checkout: a release built from that checkout;
#   3. the source recorded by the last install, packages/standalone/source.
# A channel holds install.sh, latest (the newest release's name), SHA256SUMS and
# artifacts/<release>. The artifact is verified against SHA256SUMS and must run
# `--version` before `current` is switched to it (a new symlink renamed over the old).
# Nothing is changed when the newest release is installed already, when it is listed
# in packages/standalone/rejected, or when anything fails. A `current` that is not
# codexd's is replaced only with --force.
set -eu

say() { printf 'install.sh: %s\n' "$*" >&2; }
die() {
	say "error: $*"
	exit 1
}
have() { command -v "$1" >/dev/null 2>&1; }

force=0
for arg in "$@"; do
	case $arg in
	--force) force=1 ;;
	-h | --help)
		say "usage: sh install.sh [--force]   (CODEXD_CHANNEL=<directory or https:// URL>)"
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
releases=$standalone/releases
current=$standalone/current
marker_name=.codexd-release

# What a failed run must undo; each is cleared once the step it guards is final.
tmp=
staged=
placed=
aside=
kept=
previous_saved=
cleanup() {
	[ -z "$staged" ] || rm -rf "$staged"
	# A release dir this run put in place but never made current.
	[ -z "$placed" ] || rm -rf "$placed"
	if [ -n "$aside" ] && [ -e "$aside" ]; then
		[ -e "$releases/$release" ] || mv "$aside" "$releases/$release" 2>/dev/null || :
		rm -rf "$aside"
	fi
	if [ -n "$kept" ] && [ ! -e "$current" ] && [ ! -L "$current" ]; then
		mv "$kept" "$current" 2>/dev/null || :
	fi
	if [ -n "$previous_saved" ]; then
		if [ -f "$tmp/previous.saved" ]; then
			mv -f "$tmp/previous.saved" "$standalone/previous" 2>/dev/null || :
		else
			rm -f "$standalone/previous"
		fi
	fi
	[ -z "$tmp" ] || rm -rf "$tmp"
}
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

# rename_over SRC DST: rename(2) SRC onto DST, replacing a file or symlink at DST in one step.
mv_t=0
: >"$tmp/mv-probe"
if mv -T "$tmp/mv-probe" "$tmp/mv-probe-done" 2>/dev/null; then mv_t=1; fi
rename_over() {
	if [ "$mv_t" = 1 ]; then
		mv -T -- "$1" "$2"
	else
		python3 -c 'import os,sys; os.replace(sys.argv[1], sys.argv[2])' "$1" "$2"
	fi
}

# write_file PATH CONTENT: atomically, through a temp file beside it.
write_file() {
	if ! { printf '%s\n' "$2" >"$1.tmp.$$" && rename_over "$1.tmp.$$" "$1"; }; then
		rm -f "$1.tmp.$$"
		die "cannot write $1"
	fi
}

# sha256_of FILE: sets $digest to FILE's sha256 in lowercase hex.
sha256_of() {
	if have sha256sum; then
		digest=$(sha256sum <"$1") || die "cannot checksum $1"
	elif have shasum; then
		digest=$(shasum -a 256 <"$1") || die "cannot checksum $1"
	elif have python3; then
		digest=$(python3 -c 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())' <"$1") ||
			die "cannot checksum $1"
	else
		die "need sha256sum, shasum or python3 to verify the download"
	fi
	digest=${digest%% *}
}

# is_checkout DIR: a codexd checkout install.sh can build a release from.
is_checkout() { [ -f "$1/release/publish.py" ] && [ -d "$1/supervisor" ]; }

# --- Where releases come from -------------------------------------------------
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
	have python3 || die "python3 is needed to build a release from $source_location"
	say "building a release from the checkout $source_location"
	python3 "$source_location/release/publish.py" --channel "$tmp/channel" >"$tmp/built" ||
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
source_line="$source_kind $source_location"

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

record_source() {
	if [ -f "$standalone/source" ] && [ "$(cat "$standalone/source")" = "$source_line" ]; then
		return 0
	fi
	mkdir -p "$standalone"
	write_file "$standalone/source" "$source_line"
}

# --- Which release ------------------------------------------------------------
fetch latest "$tmp/latest"
release=$(tr -d ' \t\r\n' <"$tmp/latest")
case $release in
'') die "channel $channel: latest is empty" ;;
.* | *[!A-Za-z0-9._-]*) die "channel $channel: latest names an invalid release '$release'" ;;
esac

if [ -f "$standalone/rejected" ] && grep -qxF "$release" "$standalone/rejected"; then
	say "release $release was rolled back on this machine (listed in $standalone/rejected); not installing it"
	exit 0
fi

fetch SHA256SUMS "$tmp/SHA256SUMS"
expected=$(awk -v path="artifacts/$release" '$2 == path || $2 == "*" path { print $1; exit }' "$tmp/SHA256SUMS" |
	tr 'A-F' 'a-f')
case $expected in
'') die "channel $channel: SHA256SUMS has no checksum for artifacts/$release" ;;
*[!0-9a-f]*) die "channel $channel: SHA256SUMS has a malformed checksum for artifacts/$release" ;;
esac
[ "${#expected}" -eq 64 ] || die "channel $channel: SHA256SUMS has a malformed checksum for artifacts/$release"

# --- What is installed now ----------------------------------------------------
# current_release: the release `current` points at, when it is codexd's: a symlink
# to releases/<name> holding the marker.
current_release=
if [ -L "$current" ]; then
	target=$(readlink "$current")
	target=${target%/}
	case $target in
	"$releases"/*) name=${target#"$releases"/} ;;
	releases/*) name=${target#releases/} ;;
	*) name= ;;
	esac
	case $name in
	'' | .* | */*) ;;
	*) [ ! -f "$releases/$name/$marker_name" ] || current_release=$name ;;
	esac
fi

if [ "$current_release" = "$release" ] && [ -f "$releases/$release/codex" ]; then
	sha256_of "$releases/$release/codex"
	if [ "$digest" = "$expected" ]; then
		record_source
		say "codexd release $release is already installed"
		exit 0
	fi
	say "the installed $releases/$release/codex does not match its checksum; reinstalling it"
fi

if [ -z "$current_release" ] && { [ -e "$current" ] || [ -L "$current" ]; }; then
	[ "$force" = 1 ] ||
		die "$current is not a codexd release (not a symlink to a release with $marker_name); rerun with --force to replace it"
	say "replacing $current, which is not a codexd release (--force)"
fi

# --- Download, verify, stage --------------------------------------------------
fetch "artifacts/$release" "$tmp/codex"
sha256_of "$tmp/codex"
[ "$digest" = "$expected" ] ||
	die "checksum mismatch for $channel/artifacts/$release: expected sha256 $expected, got $digest"
mkdir -p "$releases"

release_dir=$releases/$release
staged=$releases/.$release.tmp.$$
rm -rf "$staged"
mkdir "$staged"
mv "$tmp/codex" "$staged/codex"
chmod 0755 "$staged/codex"
# Run from the release dir's file system ($TMPDIR may be noexec). The first run also
# unpacks a pex's venv, so the daemon's first start from it is fast.
if ! "$staged/codex" --version >"$tmp/version" 2>"$tmp/version.err" </dev/null; then
	hint=
	have python3 || hint=" (no python3 on PATH: a codexd release runs with the machine's python3; install it)"
	die "release $release does not run: 'codex --version' failed$hint: $(sed -n '1,5p' "$tmp/version.err")"
fi
say "verified release $release: $(sed -n 1p "$tmp/version")"
printf 'release=%s\nsha256=%s\n' "$release" "$expected" >"$staged/$marker_name"
chmod 0644 "$staged/$marker_name"
chmod 0755 "$staged"

if [ -e "$release_dir" ] || [ -L "$release_dir" ]; then
	# A damaged copy of the same release (or, with --force, a foreign one) is moved
	# aside and restored if anything below fails.
	[ -f "$release_dir/$marker_name" ] || [ "$force" = 1 ] ||
		die "$release_dir exists and is not a codexd release; rerun with --force to replace it"
	aside=$releases/.$release.old.$$
	rename_over "$release_dir" "$aside" || die "cannot move $release_dir aside"
fi
rename_over "$staged" "$release_dir" || die "cannot rename $staged to $release_dir"
staged=
[ -n "$aside" ] || placed=$release_dir

# --- Switch ---------------------------------------------------------------------
if [ -n "$current_release" ] && [ "$current_release" != "$release" ]; then
	# Written before the switch, so `previous` never lags behind `current`; put back
	# if the switch fails.
	[ ! -f "$standalone/previous" ] || cp -p "$standalone/previous" "$tmp/previous.saved"
	previous_saved=1
	write_file "$standalone/previous" "$current_release"
fi
if [ -d "$current" ] && [ ! -L "$current" ]; then
	# rename(2) cannot replace a directory with a symlink: keep the foreign one beside.
	kept=$standalone/current.replaced.$(date +%Y%m%d%H%M%S).$$
	mv "$current" "$kept" || die "cannot move $current aside"
	say "moved the previous $current to $kept"
fi
rm -f "$standalone/.current.tmp.$$"
ln -s "releases/$release" "$standalone/.current.tmp.$$"
rename_over "$standalone/.current.tmp.$$" "$current" || {
	rm -f "$standalone/.current.tmp.$$"
	die "cannot switch $current to releases/$release"
}
placed=
kept=
previous_saved=
[ -z "$aside" ] || rm -rf "$aside"
aside=
record_source

# --- Prune: keep current and previous; only codexd's releases are removed --------
previous=
[ ! -f "$standalone/previous" ] || read -r previous <"$standalone/previous" || :
for dir in "$releases"/* "$releases"/.*; do
	name=${dir##*/}
	case $name in
	. | .. | '*' | '.*') continue ;;
	.*.tmp.* | .*.old.*)
		# Left by an install that was killed: removed once its process is gone.
		pid=${name##*.}
		case $pid in '' | *[!0-9]*) continue ;; esac
		kill -0 "$pid" 2>/dev/null || rm -rf "$dir"
		;;
	*)
		if [ "$name" != "$release" ] && [ "$name" != "$previous" ] && [ -f "$dir/$marker_name" ]; then
			rm -rf "$dir"
		fi
		;;
	esac
done

say "installed codexd release $release"
