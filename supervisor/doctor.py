"""`codexd doctor`: every check of one home, each with what to do about it, in the
shape of codex's own doctor (`schemaVersion` 1, `overallStatus`, `checks` keyed by id).

The facts are `status`'s, gathered once by `gather_status`, plus what only a doctor
asks (`doctor_facts`); each check judges them with a pure function (`doctor_checks`,
`doctor_app_checks`). A check's `durationMs` is the time its own gathering and
judging took plus that of the status sections it reports on, so the durations add up
to the whole run. Nothing here writes, signals or uses the network (`codex.login`
asks codex, which refreshes its own helper links, as every codex start does).
"""

from __future__ import annotations

import datetime
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from supervisor.control_socket import PeerCredentials
from supervisor.doctor_app_checks import (
    blocking_remedy,
    check_keeper,
    check_record,
    check_socket,
    check_sources,
    check_updater,
    start_remedy,
)
from supervisor.doctor_checks import (
    CheckStatus,
    Verdict,
    check_clock,
    check_codexd_command,
    check_disk,
    check_home,
    check_managed_install,
    check_persistence,
    check_settings,
    fail,
    worst,
)
from supervisor.doctor_facts import (
    gather_clock,
    gather_command,
    gather_home_dirs,
    gather_install,
    gather_socket,
    gather_sources,
)
from supervisor.doctor_login import check_login, gather_login, login_command
from supervisor.doctor_logs import check_logs, scan_log
from supervisor.errors import DaemonError
from supervisor.logs import worker_logs
from supervisor.paths import HomePaths, home_from_environment
from supervisor.status import gather_status
from supervisor.status_report import StatusReport
from supervisor.timestamps import UTC, timestamp

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class CheckResult:
    id: str
    category: str
    verdict: Verdict
    duration_ms: float

    def to_json(self) -> dict[str, Any]:
        verdict = self.verdict
        return {
            "id": self.id,
            "category": self.category,
            "status": verdict.status.value,
            "summary": verdict.summary,
            "details": verdict.details,
            "remediation": verdict.remediation,
            "durationMs": round(self.duration_ms),
        }


@dataclass(frozen=True)
class DoctorReport:
    home: Path
    generated_at: datetime.datetime
    results: list[CheckResult]

    @property
    def overall(self) -> CheckStatus:
        return worst([result.verdict.status for result in self.results])

    def to_json(self) -> dict[str, Any]:
        return {
            "schemaVersion": SCHEMA_VERSION,
            "generatedAt": timestamp(self.generated_at),
            "overallStatus": self.overall.value,
            "checks": {result.id: result.to_json() for result in self.results},
        }


@dataclass(frozen=True)
class Facts:
    """What every check may read: the home's paths and the status report."""

    paths: HomePaths
    report: StatusReport

    @property
    def start(self) -> str:
        report = self.report
        return start_remedy(
            report.managed.path is not None,
            report.settings.error is None,
            report.app_server.unmanaged,
        )

    @property
    def blocked(self) -> str | None:
        """What bootstrap needs fixed first."""
        report = self.report
        return blocking_remedy(report.managed.path is not None, report.settings.error is None)

    @property
    def listener(self) -> PeerCredentials | None:
        """Who accepted status's probe of the control socket."""
        probe = self.report.app_server.probe
        return None if probe is None else probe.listener

    @property
    def remote_control(self) -> bool:
        return bool(self.report.settings.remote_control_enabled)


@dataclass(frozen=True)
class Check:
    id: str
    category: str
    # The status sections it reports on: their gathering counts in its durationMs.
    sections: tuple[str, ...]
    # Gathers what status does not have, then judges.
    run: Callable[[Facts], Verdict]


def _updater_pid(report: StatusReport) -> int | None:
    record = report.updater.worker.record
    return None if record is None else record.pid


CHECKS = (
    Check(
        "install.managed",
        "install",
        ("managedRelease", "previousRelease"),
        lambda f: check_managed_install(
            f.report.managed, f.report.previous, gather_install(f.paths)
        ),
    ),
    Check("install.codexd", "install", (), lambda f: check_codexd_command(gather_command(f.paths))),
    Check("settings", "config", ("settings",), lambda f: check_settings(f.report.settings)),
    Check(
        "appServer.record",
        "app-server",
        ("daemonLock",),
        lambda f: check_record(
            f.report.app_server, f.paths.app_server_record, f.report.operation_holders, f.start
        ),
    ),
    Check(
        "appServer.keeper",
        "app-server",
        (),
        lambda f: check_keeper(f.report.app_server, f.report.managed, f.report.now, f.start),
    ),
    Check(
        "appServer.socket",
        "app-server",
        ("appServer",),
        lambda f: check_socket(
            f.report.app_server, gather_socket(f.paths, f.listener), os.geteuid(), f.start
        ),
    ),
    Check(
        "codex.login",
        "app-server",
        (),
        lambda f: check_login(
            gather_login(f.paths, gather_install(f.paths).front, f.remote_control),
            f.remote_control,
            login_command(f.paths, Path(home_from_environment({}))),
        ),
    ),
    Check(
        "updater",
        "updates",
        ("updater",),
        lambda f: check_updater(
            f.report.updater,
            f.report.settings.auto_update_enabled is not False,
            f.remote_control,
            f.report.now,
            f.blocked,
        ),
    ),
    Check(
        "updater.source",
        "updates",
        (),
        lambda f: check_sources(gather_sources(f.paths, _updater_pid(f.report))),
    ),
    Check(
        "persistence",
        "system",
        ("persistence",),
        lambda f: check_persistence(
            f.report.persistence, f.remote_control, f.blocked, f.report.persistence_blocker
        ),
    ),
    Check("disk", "disk", ("disk",), lambda f: check_disk(f.report.disk)),
    Check(
        "logs.errors",
        "logs",
        ("logs",),
        lambda f: check_logs([scan_log(name, path) for name, path in worker_logs(f.paths).items()]),
    ),
    Check("clock", "system", (), lambda f: check_clock(gather_clock(f.paths))),
)


def _timed(run: Callable[[], Verdict]) -> tuple[Verdict, float]:
    """The verdict and the milliseconds it took; a check that cannot gather its facts
    fails, naming why, and the others still run."""
    start = time.perf_counter()
    try:
        verdict = run()
    except (DaemonError, OSError) as error:
        verdict = fail(f"could not check: {error}", None)
    return verdict, (time.perf_counter() - start) * 1000


def run_doctor(paths: HomePaths) -> DoctorReport:
    generated = datetime.datetime.now(UTC)
    home, took = _timed(lambda: check_home(gather_home_dirs(paths), os.geteuid()))
    results = [CheckResult("home", "home", home, took)]
    if home.status is CheckStatus.FAIL:
        # A home that is not ours is not read: its records could be anyone's.
        return DoctorReport(paths.home, generated, results)
    facts = Facts(paths, gather_status(paths))
    for check in CHECKS:
        verdict, took = _timed(partial(check.run, facts))
        took += sum(facts.report.timings.get(section, 0.0) for section in check.sections)
        results.append(CheckResult(check.id, check.category, verdict, took))
    return DoctorReport(paths.home, generated, results)
