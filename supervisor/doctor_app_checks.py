"""`codexd doctor`'s judgements of the running parts, pure like the rest
(`doctor_checks.py`): the app-server's record and lock, its keeper, the control
socket and who listens on it, the updater and where updates come from."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

from supervisor import config
from supervisor.codex_source import SourceError, SourceKind, parse_source
from supervisor.control_socket import PeerCredentials, Unreachable
from supervisor.decisions import WorkerState
from supervisor.doctor_checks import INSTALL_REMEDY, Verdict, fail, ok, refused_dir, warning
from supervisor.doctor_facts import SocketFacts, SourceFacts, dir_details
from supervisor.installer import NEW_SOURCE_REMEDY
from supervisor.locks import LockHolder
from supervisor.private_dir import SOCKET_DIR, DirVerdict, judge_dir
from supervisor.procfs import count_processes
from supervisor.status_facts import SocketProbe
from supervisor.status_hints import INSTALL_COMMAND, bootstrap_command
from supervisor.status_render import format_duration, pass_summary
from supervisor.status_report import AppServerSection, ReleaseSection, UpdaterSection
from supervisor.timestamps import parse_timestamp, timestamp
from supervisor.update_pass import PassOutcome

RECENT_CRASH_SECONDS = 3600.0  # a crash this recent is worth a look, though it came back
UNEXPECTED_EXITS = ("crashed", "unresponsive")
# An updater whose next pass is this late (beyond an installer's time limit) is stuck.
OVERDUE_SLACK_SECONDS = 60.0
AGAIN = "run `codexd doctor` again in a moment"


def blocking_remedy(installed: bool, settings_readable: bool) -> str | None:
    """What must be fixed before start or bootstrap can succeed; None: nothing."""
    if not installed:
        return INSTALL_REMEDY
    if not settings_readable:
        return "fix settings.json first (see the settings check)"
    return None


def start_remedy(installed: bool, settings_readable: bool, unmanaged: bool) -> str:
    """What starts the managed app-server now, given what would refuse `start`."""
    blocked = blocking_remedy(installed, settings_readable)
    if blocked is not None:
        return blocked
    return "`codexd start --takeover`" if unmanaged else "`codexd start`"


# -- the record and the keeper ---------------------------------------------------------


def check_record(
    app: AppServerSection, record_path: Path, holders: list[LockHolder], start: str
) -> Verdict:
    """The pid record and its lock agree; nothing holds daemon.lock while stopped."""
    worker = app.worker
    record = worker.record
    details: dict[str, Any] = {
        "path": str(record_path),
        "state": worker.state.value,
        "keeperPid": None if record is None else record.pid,
        "appServerPid": None if app.child is None else app.child.pid,
        "daemonLockHeldBy": [holder.describe() for holder in holders],
    }
    if worker.state is WorkerState.UNREADABLE:
        return fail(
            worker.error or f"{record_path} is unreadable",
            f"inspect {record_path} by hand (its keeper holds the lock)",
            details,
        )
    stopped = [holder for holder in holders if (holder.state or "").startswith("stopped")]
    if stopped:
        pid = stopped[0].pid
        return warning(
            f"daemon.lock is held by {stopped[0].describe()}: every lifecycle command waits",
            f"`kill -CONT {pid}` lets it finish (or end it: `kill {pid}`)",
            details,
        )
    if worker.state is WorkerState.STARTING:
        return warning("a keeper holds the lock; its record does not name it yet", AGAIN, details)
    if worker.state is WorkerState.STALE:
        return warning(
            f"{record_path} is stale: its keeper is gone (the lock is free)",
            f"{start} removes it and starts the app-server",
            details,
        )
    if worker.state is WorkerState.FAILED:
        return ok(f"{record_path.name} kept to say why the keeper gave up", details)
    if record is None:
        return ok("no record: no keeper runs", details)
    child = "" if app.child is None else f" and its app-server pid {app.child.pid}"
    return ok(f"the keeper (pid {record.pid}) holds the lock; the record names it{child}", details)


def _exits(app: AppServerSection) -> str:
    report = app.keeper
    if report is None or not report.failed_exits:
        return ""
    return " (" + ", ".join(exit.description for exit in report.failed_exits) + ")"


def check_keeper(
    app: AppServerSection, managed: ReleaseSection, now: datetime.datetime, start: str
) -> Verdict:
    """The keeper's state: running, starting, backoff, failed (crash loop), not running;
    its restarts and last exit; whether it runs the managed release."""
    report, child, worker = app.keeper, app.child, app.worker
    last = None if report is None else report.last_exit
    details: dict[str, Any] = {
        "status": app.status,
        "keeperPid": None if worker.record is None else worker.record.pid,
        "appServerPid": None if child is None else child.pid,
        "since": None if report is None else report.since,
        "restarts": None if report is None else report.restarts,
        "lastExit": None if last is None else last.to_json(),
        "failure": None if report is None else report.failure,
        "busyProcesses": app.busy_processes,
        "release": worker.release,
    }
    if app.unmanaged:
        return warning(
            "no managed app-server: one codexd did not start holds the socket "
            "(see appServer.socket)",
            start,
            details,
        )
    state = worker.state
    if state is WorkerState.FAILED or (report is not None and report.state == "givingUp"):
        failure = (report.failure if report else None) or "the app-server did not start"
        return fail(
            f"the keeper gave up: {failure}{_exits(app)}",
            f"fix the cause (`codexd logs app-server`), then {start}",
            details,
        )
    if state in (WorkerState.NOT_RUNNING, WorkerState.STALE):
        return warning("not running", start, details)
    if state is WorkerState.STARTING:
        return warning("starting", AGAIN, details)
    if state is WorkerState.UNREADABLE or worker.record is None:
        return warning("unknown: the record cannot be read (see appServer.record)", None, details)
    keeper_state = "running" if report is None else report.state
    if keeper_state == "backoff":
        how = "" if last is None else f" ({last.description})"
        return warning(
            f"crashed{how}; the keeper waits out its restart delay",
            "`codexd start` restarts it now",
            details,
        )
    if keeper_state in ("launching", "starting"):
        return warning("starting", AGAIN, details)
    if keeper_state == "replacing":
        return warning(
            "replacing an app-server that stopped answering", "`codexd logs app-server`", details
        )
    if keeper_state != "running":
        return warning(f"the keeper is {keeper_state}", AGAIN, details)
    running = worker.record.executable_digest
    if managed.digest is not None and running != managed.digest:
        return warning(
            f"runs {worker.release or worker.record.executable}, not the managed release "
            f"{managed.release or managed.path}",
            "`codexd restart` moves it onto the managed release"
            + (
                f" (ending the {count_processes(app.busy_processes)} below it)"
                if app.busy_processes
                else ""
            ),
            details,
        )
    restarts = 0 if report is None else report.restarts
    uptime = format_duration((now - worker.started).total_seconds()) if worker.started else "?"
    summary = f"running: app-server pid {child.pid if child else '?'}, keeper up {uptime}"
    summary += f", {restarts} restart{'s' if restarts != 1 else ''}"
    ended = None if last is None else parse_timestamp(last.at)
    if last is not None and ended is not None and last.reason in UNEXPECTED_EXITS:
        ago = (now - ended).total_seconds()
        if ago < RECENT_CRASH_SECONDS:
            return warning(
                f"{summary}; the last exit {format_duration(ago)} ago: "
                f"{last.description} ({last.reason})",
                "`codexd logs app-server` says why",
                details,
            )
    return ok(summary, details)


# -- the control socket ------------------------------------------------------------------


def _who(listener: PeerCredentials | None, command: str | None) -> str:
    if listener is None:
        return ""
    return f" (pid {listener.pid}, uid {listener.uid}: {command or 'command unknown'})"


def check_socket(app: AppServerSection, socket: SocketFacts, euid: int, start: str) -> Verdict:
    """Does it answer, who listens (SO_PEERCRED), is that the keeper's app-server; the
    socket directory's owner and mode."""
    seen = app.probe or SocketProbe(app.answering_version)
    listener, child = seen.listener, app.child
    managed = None if listener is None or child is None else listener.pid == child.pid
    details: dict[str, Any] = {
        "socketPath": str(app.socket_path),
        "kind": socket.kind,
        "target": None if socket.target is None else str(socket.target),
        "directory": dir_details(socket.directory),
        "targetDirectory": None
        if socket.target_directory is None
        else dir_details(socket.target_directory),
        "answering": seen.version is not None,
        "version": seen.version,
        "listenerPid": None if listener is None else listener.pid,
        "listenerUid": None if listener is None else listener.uid,
        "listenerCommand": socket.listener_command,
        "managed": managed,
        "appServerPid": None if child is None else child.pid,
        "unreachable": None if seen.unreachable is None else seen.unreachable.value,
        "probeError": seen.error,
    }
    directory = socket.directory
    if directory.error is not None:
        return fail(directory.error, "check the directory's permissions", details)
    verdict = judge_dir(directory.facts, euid, SOCKET_DIR)
    if verdict in (DirVerdict.FOREIGN, DirVerdict.SYMLINK, DirVerdict.NOT_A_DIRECTORY):
        return refused_dir(directory.path, verdict, directory.facts, SOCKET_DIR, details)
    who = _who(listener, socket.listener_command)
    if seen.version is not None:
        if child is None:
            return warning(
                f"an app-server codexd did not start answers{who}",
                "`codexd start --takeover` stops it and starts the managed one",
                details,
            )
        if managed is False:
            return warning(
                f"answers from another process{who}, not the keeper's app-server (pid {child.pid})",
                "stop that process if it is not yours to keep, then `codexd restart`",
                details,
            )
        if verdict is DirVerdict.LOOSE:
            return warning(
                f"answers, but {directory.path} is writable by others",
                f"`chmod go-w {directory.path}` (the next start does it too)",
                details,
            )
        pid = "" if child is None else f" (pid {child.pid})"
        return ok(f"answers: version {seen.version}, from the managed app-server{pid}", details)
    return _unanswered(app, seen, who, start, details)


def _unanswered(
    app: AppServerSection, seen: SocketProbe, who: str, start: str, details: dict[str, Any]
) -> Verdict:
    reason, error = seen.unreachable, seen.error or f"{app.socket_path}: no answer"
    should_answer = app.status == "running"
    if reason is Unreachable.UNTRUSTED:
        return fail(error, "have its owner (or root) remove it; codexd never talks to it", details)
    if reason is Unreachable.DENIED:
        return fail(error, f"check the socket's owner and mode: `ls -l {app.socket_path}`", details)
    if reason is Unreachable.BAD_ANSWER:
        remedy = (
            "stop it, then `codexd restart`"
            if should_answer
            else "`codexd start --takeover` stops it and starts the managed one"
        )
        return fail(f"what listens is no app-server{who}: {error}", remedy, details)
    if reason is Unreachable.NO_ANSWER:
        remedy = (
            "`codexd restart` (the watchdog replaces it after three failed probes)"
            if should_answer
            else "`codexd start --takeover` replaces it"
        )
        return fail(f"the app-server{who} does not answer: {error}", remedy, details)
    if reason is Unreachable.OUT_OF_RESOURCES:
        return warning(error, "raise this shell's open-file limit (`ulimit -n`)", details)
    if reason is Unreachable.NOT_LISTENING:
        if should_answer:
            return fail(
                f"the managed app-server does not listen: {error}", "`codexd restart`", details
            )
        return warning(f"nothing listens on {app.socket_path}", start, details)
    return fail(error, "`codexd logs app-server`", details)


# -- the updater -------------------------------------------------------------------------


def check_updater(
    updater: UpdaterSection,
    auto_update: bool,
    remote_control: bool,
    now: datetime.datetime,
    blocked: str | None = None,
) -> Verdict:
    """Running (or turned off), its last pass and outcome, its next pass."""
    worker, last, outcome = updater.worker, updater.last_pass, updater.outcome
    finished = None if last is None else parse_timestamp(last.finished_at or last.started_at)
    details: dict[str, Any] = {
        "status": worker.state.value,
        "pid": None if worker.record is None else worker.record.pid,
        "autoUpdateEnabled": auto_update,
        "lastPass": None if last is None else last.number,
        "lastPassAt": None if finished is None else timestamp(finished),
        "lastPassOutcome": outcome.value,
        "nextPassAt": None if updater.next_pass is None else timestamp(updater.next_pass),
    }
    pass_text = "none yet" if last is None else pass_summary(last, outcome)
    if last is not None and finished is not None:
        ago = format_duration((now - finished).total_seconds())
        pass_text = f"#{last.number} {ago} ago: {pass_text}"
    if worker.state is WorkerState.UNREADABLE:
        return fail(worker.error or "the updater's record is unreadable", None, details)
    if worker.state is WorkerState.STARTING:
        return warning("starting", AGAIN, details)
    if worker.state is not WorkerState.RUNNING or worker.record is None:
        if not auto_update:
            return ok(f"not running: automatic updates are off; last pass {pass_text}", details)
        return warning(
            "not running: nothing keeps codex and codexd current",
            blocked or f"`{bootstrap_command(remote_control)}`",
            details,
        )
    pid = worker.record.pid
    if outcome in (PassOutcome.FAILED, PassOutcome.INSTALLER_FAILED):
        return warning(f"the last pass failed: {pass_text}", "`codexd logs updater`", details)
    if outcome is PassOutcome.ROLLED_BACK:
        return warning(
            f"the last pass rolled back: {pass_text}", "`codexd logs app-server` says why", details
        )
    if outcome is PassOutcome.DEFERRED:
        return warning(
            pass_text, "`codexd update --yes` restarts it now (ending what runs below it)", details
        )
    next_pass = updater.next_pass
    late = None if next_pass is None else (now - next_pass).total_seconds()
    if late is not None and late > config.INSTALL_TIMEOUT_SECONDS + OVERDUE_SLACK_SECONDS:
        return warning(
            f"running (pid {pid}), but its next pass was due {format_duration(late)} ago",
            f"`kill -USR1 {pid}` runs one now; `codexd logs updater`",
            details,
        )
    when = "-" if late is None else f"in {format_duration(-late)}" if late < 0 else "now"
    return ok(f"running (pid {pid}); last pass {pass_text}; next pass {when}", details)


def check_sources(source: SourceFacts) -> Verdict:
    """Where updates come from, and whether it can be reached without the network."""
    codexd = source.codexd
    details: dict[str, Any] = {
        "codexdSource": None if codexd is None else f"{codexd.kind} {codexd.location}",
        "codexdSourceFrom": config.CHANNEL_ENV if source.codexd_from_env else "recorded",
        "codexdSourcePresent": source.codexd_present,
        "codexSource": source.codex,
        "codexSourceFrom": source.codex_origin,
        "npm": source.npm,
        "npmVersion": source.npm_version,
    }
    problems: list[tuple[str, str]] = []
    if codexd is None:
        problems.append(
            (
                f"no codexd release source: neither {config.CHANNEL_ENV} nor a recorded one",
                f"rerun `{INSTALL_COMMAND}` from your checkout or channel (it records it)",
            )
        )
        codexd_text = "codexd from nowhere"
    elif source.codexd_problem is not None:
        problems.append((source.codexd_problem, NEW_SOURCE_REMEDY))
        codexd_text = ""
    else:
        checked = " (not checked: doctor uses no network)" if source.codexd_present is None else ""
        codexd_text = f"codexd from {codexd.kind} {codexd.location}{checked}"
    pin = f"CODEXD_CODEX_SOURCE=path:<codex binary> {INSTALL_COMMAND}"
    try:
        kind = parse_source(source.codex).kind
    except SourceError as error:
        problems.append((f"{source.codex_origin}: {error}", f"fix it, e.g. {pin}"))
        kind = None
    if kind is SourceKind.NPM and source.npm is None:
        problems.append(
            (
                f"codex comes from {source.codex}, but npm is not on PATH",
                f"install Node.js and npm, or pin codex: `{pin}`",
            )
        )
    elif kind is SourceKind.NPM and source.npm_error is not None:
        problems.append((source.npm_error, "repair npm (`npm doctor`)"))
    elif kind is SourceKind.PATH and source.codex_file_present is False:
        problems.append(
            (f"codex source {source.codex}: no such file", f"give another one: `{pin}`")
        )
    if problems:
        return warning("; ".join(text for text, _ in problems), problems[0][1], details)
    npm = f" (npm {source.npm_version})" if kind is SourceKind.NPM else ""
    return ok(f"{codexd_text}; codex from {source.codex}{npm}", details)
