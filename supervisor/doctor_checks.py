"""`codexd doctor`'s judgements: each check is a pure function of facts already
gathered (the `status` sections and `doctor_facts`) that returns a `Verdict`: ok,
warning or fail, one line that says what was found, the facts behind it, and one line
that says what to do. Tables in tests/test_doctor_checks.py pin every answer."""

from __future__ import annotations

import datetime
import shlex
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from supervisor import config
from supervisor.doctor_facts import (
    ClockFacts,
    CommandFacts,
    DirCheck,
    InstallFacts,
    dir_details,
)
from supervisor.private_dir import (
    HOME,
    STATE_DIR,
    DirFacts,
    DirRule,
    DirVerdict,
    judge_dir,
    refusal,
)
from supervisor.status import version_of_release
from supervisor.status_facts import LOW_DISK_FAIL_BYTES, LOW_DISK_WARNING_BYTES, DiskSection
from supervisor.status_hints import INSTALL_COMMAND, bootstrap_command
from supervisor.status_render import format_duration, format_size
from supervisor.status_report import ReleaseSection, SettingsSection
from supervisor.timestamps import timestamp
from supervisor.version import CODEXD_VERSION


class CheckStatus(Enum):
    OK = "ok"
    WARNING = "warning"
    FAIL = "fail"


_SEVERITY = {CheckStatus.OK: 0, CheckStatus.WARNING: 1, CheckStatus.FAIL: 2}


def worst(statuses: list[CheckStatus]) -> CheckStatus:
    """fail if any check fails, else warning if any warns, else ok (codex's rule)."""
    return max(statuses, key=_SEVERITY.__getitem__, default=CheckStatus.OK)


@dataclass(frozen=True)
class Verdict:
    status: CheckStatus
    summary: str
    details: dict[str, Any] = field(default_factory=dict)
    remediation: str | None = None


def ok(summary: str, details: dict[str, Any] | None = None) -> Verdict:
    return Verdict(CheckStatus.OK, summary, details or {})


def warning(
    summary: str, remediation: str | None, details: dict[str, Any] | None = None
) -> Verdict:
    return Verdict(CheckStatus.WARNING, summary, details or {}, remediation)


def fail(summary: str, remediation: str | None, details: dict[str, Any] | None = None) -> Verdict:
    return Verdict(CheckStatus.FAIL, summary, details or {}, remediation)


INSTALL_REMEDY = (
    f"install codexd and codex: `{INSTALL_COMMAND}` in a codexd checkout "
    f"(or `CODEXD_CHANNEL=<channel> {INSTALL_COMMAND}`)"
)
CLOCK_SLACK_SECONDS = 5.0


# -- the home ----------------------------------------------------------------------------


_DIR_KEYS = {HOME.what: "home", STATE_DIR.what: "stateDir"}


def refused_dir(
    path: Path, verdict: DirVerdict, facts: DirFacts | None, rule: DirRule, details: dict[str, Any]
) -> Verdict:
    """The failure for a directory codexd will not use. A file where the directory
    should be is no question of ownership: it says so, and that it must go."""
    if verdict is not DirVerdict.NOT_A_DIRECTORY:
        return fail(refusal(path, verdict, facts, rule), rule.foreign_fix, details)
    remedy = (
        f"point CODEX_HOME at a directory, or remove or rename the file {path}"
        if rule is HOME
        else f"remove or rename the file {path}; the next start makes the directory"
    )
    return fail(f"{rule.what} {path} is a file, not a directory", remedy, details)


def check_home(dirs: list[DirCheck], euid: int) -> Verdict:
    """The home and its state directory are ours and closed to others."""
    details = {
        _DIR_KEYS.get(check.rule.what, check.rule.what): dir_details(check) for check in dirs
    }
    loose = []
    for check in dirs:
        if check.error is not None:
            return fail(check.error, "check the path's permissions", details)
        verdict = judge_dir(check.facts, euid, check.rule)
        if verdict is DirVerdict.MISSING and check.rule is HOME:
            return fail(f"no codex home at {check.path}", INSTALL_REMEDY, details)
        if verdict in (DirVerdict.FOREIGN, DirVerdict.SYMLINK, DirVerdict.NOT_A_DIRECTORY):
            return refused_dir(check.path, verdict, check.facts, check.rule, details)
        if verdict is DirVerdict.LOOSE:
            loose.append(check)
    if loose:
        paths = " ".join(str(check.path) for check in loose)
        return warning(
            f"open to other users: {paths}",
            f"`chmod go-w {paths}` (the next start, stop or bootstrap tightens them)",
            details,
        )
    return ok(f"{dirs[0].path}: yours, not writable by others", details)


# -- the managed install ---------------------------------------------------------------


def check_managed_install(
    managed: ReleaseSection, previous: ReleaseSection | None, install: InstallFacts
) -> Verdict:
    """The front at current/codex, the codex and codexd it runs, versions and digests."""
    marker, front = install.marker, install.front
    details: dict[str, Any] = {
        "managedBinary": str(install.managed_binary),
        "current": install.current_target,
        "release": managed.release,
        "version": managed.version,
        "digest": managed.digest,
        "codexdRelease": marker.get("codexd"),
        "codexdVersion": version_of_release(marker.get("codexd")),
        "codexPayload": marker.get("codex"),
        "codexBinary": None if front is None else front.codex,
        "python": None if front is None else front.python,
        "previousRelease": None if previous is None else previous.release,
        "rejected": list(managed.rejected),
    }
    if managed.path is None:
        where = f" (current -> {install.current_target}, which is missing)"
        return fail(
            f"no managed release at {install.managed_binary}"
            + (where if install.current_target else ""),
            INSTALL_REMEDY,
            details,
        )
    if not install.executable:
        return fail(f"{managed.path} is not executable", INSTALL_REMEDY, details)
    if install.missing_parts:
        return fail(
            f"release {managed.release} is incomplete: missing {', '.join(install.missing_parts)}",
            f"reinstall it: `{INSTALL_COMMAND}` (or `codexd rollback` to the previous release)",
            details,
        )
    expected = marker.get("sha256")
    if front is not None and expected and managed.digest != f"sha256:{expected}":
        return warning(
            f"the front {managed.path} was changed after install.sh wrote it "
            f"({managed.digest}, recorded sha256:{expected})",
            f"reinstall: `{INSTALL_COMMAND}`",
            details,
        )
    if managed.version is None:
        return warning(
            f"{managed.path} --version does not say its version",
            f"run `{install.managed_binary} --version` to see why",
            details,
        )
    if front is None:
        return ok(
            f"{managed.release or managed.path}: version {managed.version} "
            "(not a release install.sh wrote: no parts to check)",
            details,
        )
    codex = "the reference app-server" if front.codex is None else f"codex {managed.version}"
    codexd = details["codexdVersion"] or "?"
    return ok(f"release {managed.release}: {codex}, codexd {codexd}", details)


def check_codexd_command(facts: CommandFacts) -> Verdict:
    """`${CODEXD_BIN_DIR:-~/.local/bin}/codexd` is install.sh's, for this home, on PATH."""
    from supervisor.front import BIN_COMMAND_MARK

    details = {
        "command": str(facts.command),
        "onPath": facts.on_path,
        "pathFinds": facts.path_finds,
        "running": facts.running,
        "cliVersion": CODEXD_VERSION,
    }
    bin_dir = facts.command.parent
    if facts.text is None:
        return warning(
            f"no codexd command at {facts.command}",
            f"`{INSTALL_COMMAND}` writes it (or set {config.BIN_DIR_ENV} to where it is)",
            details,
        )
    if BIN_COMMAND_MARK not in facts.text:
        return warning(
            f"{facts.command} was not written by install.sh",
            f"move it away and rerun `{INSTALL_COMMAND}`, or set {config.BIN_DIR_ENV}",
            details,
        )
    serves_another = facts.serves is not None and facts.serves != facts.home
    if serves_another:
        # The user's main home, most likely: rerunning install.sh for this one would
        # point their `codexd` away from it.
        details["serves"] = str(facts.serves)
        if facts.text != facts.serves_expected:
            return warning(
                f"{facts.command} was written by an older install.sh",
                f"rerun `CODEX_HOME={shlex.quote(str(facts.serves))} {INSTALL_COMMAND}`",
                details,
            )
    elif facts.text != facts.expected:
        return warning(
            f"{facts.command} was written by an older install.sh (or for another home)",
            f"rerun `{INSTALL_COMMAND}` for this home",
            details,
        )
    if not facts.on_path:
        return warning(
            f"{bin_dir} is not on PATH",
            f'add it: `export PATH="{bin_dir}:$PATH"` in ~/.profile',
            details,
        )
    if not facts.finds_this:
        return warning(
            f"`codexd` on PATH is {facts.path_finds}, not {facts.command}",
            f"put {bin_dir} earlier on PATH, or remove {facts.path_finds}",
            details,
        )
    if serves_another:
        this = shlex.quote(str(facts.home))
        return ok(
            f"{facts.command}, on PATH, serves {facts.serves}; for this home use "
            f"`CODEX_HOME={this} codexd ...`, or set {config.BIN_DIR_ENV} when installing "
            "a codexd command for it",
            details,
        )
    return ok(f"{facts.command}, on PATH", details)


# -- settings ---------------------------------------------------------------------------


def _on_off(value: bool | None) -> str:
    return "?" if value is None else ("on" if value else "off")


def check_settings(settings: SettingsSection) -> Verdict:
    details = {"path": str(settings.path), **settings.to_json()}
    if settings.error is not None:
        return fail(
            settings.error,
            f"fix or remove {settings.path} (start, restart, bootstrap and the "
            "remote-control commands refuse until then)",
            details,
        )
    auto_update = settings.auto_update_enabled is not False
    return ok(
        f"remote control {_on_off(bool(settings.remote_control_enabled))}, "
        f"automatic updates {_on_off(auto_update)}",
        details,
    )


# -- the system --------------------------------------------------------------------------


def check_persistence(
    persistence: str | None,
    remote_control: bool,
    blocked: str | None = None,
    persistence_blocker: str | None = None,
) -> Verdict:
    """`persistence_blocker`: why this host cannot persist; it wins over `blocked` (what
    the install needs first), since bootstrap --persist would fail after either."""
    details = {"persistence": persistence, "cannotPersist": persistence_blocker}
    if persistence is None:
        return warning(
            "not persisted: nothing starts after a reboot",
            persistence_blocker
            or blocked
            or f"`{bootstrap_command(remote_control, persist=True)}`",
            details,
        )
    how = "a systemd user unit" if persistence == "systemd" else "a crontab @reboot line"
    return ok(f"bootstrapped again at boot by {how}", details)


FULL_DISK_REMEDY = 'free space: docs/sysadmin.md, "Recover from a full disk"'


def check_disk(disk: DiskSection | None) -> Verdict:
    if disk is None:
        return warning("no disk facts were gathered", None)
    details = disk.to_json()
    if disk.free_bytes is None:
        return warning(disk.error or f"cannot tell the free space under {disk.path}", None, details)
    free = format_size(disk.free_bytes)
    takes = f"the managed install takes {format_size(disk.usage.total)}"
    if disk.free_bytes < LOW_DISK_FAIL_BYTES:
        return fail(
            f"only {free} free under {disk.path}: state files and logs cannot be written; {takes}",
            FULL_DISK_REMEDY,
            details,
        )
    if disk.free_bytes < LOW_DISK_WARNING_BYTES:
        return warning(
            f"{free} free under {disk.path}: an update of codex needs about 500 MB; {takes}",
            FULL_DISK_REMEDY,
            details,
        )
    return ok(f"{free} free under {disk.path}; {takes}", details)


def check_clock(clock: ClockFacts) -> Verdict:
    """The boot id can be read (identity checks use it), and the clock is not behind the
    state files (start times, pass times and the schedule would be off)."""
    moment = datetime.datetime.fromtimestamp(clock.now, datetime.UTC)
    details = {
        "bootId": clock.boot_id,
        "now": timestamp(moment),
        "newestStateFile": None if clock.newest_file is None else str(clock.newest_file),
        "newestModifiedAt": None
        if clock.newest_mtime is None
        else timestamp(datetime.datetime.fromtimestamp(clock.newest_mtime, datetime.UTC)),
    }
    if clock.boot_id is None:
        return warning(
            f"{clock.boot_id_error}: codexd tells boots apart by the boot time instead",
            None,
            details,
        )
    if clock.newest_mtime is not None and clock.newest_mtime > clock.now + CLOCK_SLACK_SECONDS:
        ahead = format_duration(clock.newest_mtime - clock.now)
        return warning(
            f"the clock is behind: {clock.newest_file} was written {ahead} in the future",
            "set the system clock right (e.g. `timedatectl set-ntp true`)",
            details,
        )
    return ok(f"boot id {clock.boot_id}; the clock is not behind the state files", details)
