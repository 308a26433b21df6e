"""`codexd doctor` on real homes: a healthy one has no failing check, a missing install
and a crash loop fail with the command that fixes them, an app-server codexd did not
start is named by the socket check; exit statuses, marks and the JSON shape."""

from __future__ import annotations

import datetime
import json
import os
import pty
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from supervisor.doctor import CheckResult, DoctorReport
from supervisor.doctor_checks import CheckStatus, Verdict
from supervisor.doctor_render import doctor_lines, fancy_output
from supervisor.front import render_bin_command
from tests.conftest import CODEXD, Home, is_gone, make_home, wait_for
from tests.test_doctor_logs import CODEX_BUBBLEWRAP_LINE
from tests.test_keeper import FAST, SETTLE_SECONDS, install_binary
from tests.updating import install

CHECK_IDS = {
    "home",
    "install.managed",
    "install.codexd",
    "settings",
    "appServer.record",
    "appServer.keeper",
    "appServer.socket",
    "codex.login",
    "updater",
    "updater.source",
    "persistence",
    "disk",
    "logs.errors",
    "clock",
}
CHECK_KEYS = {"id", "category", "status", "summary", "details", "remediation", "durationMs"}
OK, WARNING, FAIL = CheckStatus.OK, CheckStatus.WARNING, CheckStatus.FAIL
# The brief is about 1 s on a healthy home; twice that leaves room for a loaded machine.
DOCTOR_BUDGET_MS = 2000


def doctor_json(home: Home, *prefix: str) -> tuple[int, dict[str, Any]]:
    """Exit status and report of `doctor --json`, after checking the report's shape."""
    result = home.run(*prefix, "doctor", "--json")
    assert result.stderr == ""
    [line] = result.stdout.splitlines()
    report = json.loads(line)
    assert set(report) == {"schemaVersion", "generatedAt", "overallStatus", "checks"}
    assert report["schemaVersion"] == 1
    checks = report["checks"]
    statuses = {check["status"] for check in checks.values()}
    for name, check in checks.items():
        assert set(check) == CHECK_KEYS and check["id"] == name
        assert check["status"] in ("ok", "warning", "fail")
        assert isinstance(check["details"], dict) and isinstance(check["summary"], str)
        assert check["remediation"] is None or "\n" not in check["remediation"]
        assert type(check["durationMs"]) is int and check["durationMs"] >= 0
    expected = "fail" if "fail" in statuses else "warning" if "warning" in statuses else "ok"
    assert report["overallStatus"] == expected
    assert result.returncode == (1 if expected == "fail" else 0)
    return result.returncode, report


def install_codexd_command(home: Home, tmp_path: Path) -> None:
    """The `codexd` command install.sh would write for this home, first on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    command = bin_dir / "codexd"
    command.write_text(render_bin_command(home.path))
    command.chmod(0o755)
    home.env.update(CODEXD_BIN_DIR=str(bin_dir), PATH=f"{bin_dir}:{home.env['PATH']}")


def test_a_healthy_home_has_no_failing_check(home: Home, tmp_path: Path) -> None:
    install_codexd_command(home, tmp_path)
    home.env.update(CODEXD_UPDATE_INITIAL_DELAY_SECONDS="3600")
    home.ok("bootstrap")
    started = time.monotonic()
    status, report = doctor_json(home)
    elapsed = time.monotonic() - started
    checks = report["checks"]
    assert status == 0 and report["overallStatus"] in ("ok", "warning")
    assert set(checks) == CHECK_IDS
    failing = [name for name, check in checks.items() if check["status"] == "fail"]
    assert failing == []
    for name in ("home", "install.managed", "install.codexd", "settings", "appServer.record"):
        assert checks[name]["status"] == "ok", checks[name]
    for name in ("appServer.keeper", "appServer.socket", "updater", "disk", "logs.errors"):
        assert checks[name]["status"] == "ok", checks[name]
    record = home.record()
    assert record is not None
    socket = checks["appServer.socket"]["details"]
    assert socket["listenerPid"] == record["appServerPid"] and socket["managed"] is True
    assert socket["listenerUid"] == os.getuid() and socket["directory"]["mode"] == "0700"
    keeper = checks["appServer.keeper"]
    assert f"app-server pid {record['appServerPid']}" in keeper["summary"]
    assert keeper["details"]["restarts"] == 0
    total = sum(check["durationMs"] for check in checks.values())
    print(f"doctor on a healthy home: {elapsed * 1000:.0f} ms wall, checks {total} ms")
    assert total < DOCTOR_BUDGET_MS


def test_a_second_home_is_told_how_to_reach_it_not_to_repoint_the_codexd_command(
    home: Home, tmp_path: Path
) -> None:
    install_codexd_command(home, tmp_path)  # `codexd` serves the main home
    second = make_home(tmp_path / "second")  # empty: `CODEX_HOME=.../second codexd doctor`
    try:
        second.env.update({key: home.env[key] for key in ("CODEXD_BIN_DIR", "PATH")})
        _, report = doctor_json(second)
    finally:
        second.cleanup()
    check = report["checks"]["install.codexd"]
    assert check["status"] == "ok", check
    assert f"serves {home.path}" in check["summary"]
    assert f"CODEX_HOME={second.path} codexd" in check["summary"]
    assert check["details"]["serves"] == str(home.path)


def test_the_managed_binary_runs_doctor_in_codex_grammar(home: Home) -> None:
    completed = subprocess.run(
        [str(home.paths.managed_binary), "app-server", "daemon", "doctor", "--json"],
        env=home.env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert completed.returncode == 0, completed.stderr
    assert '"schemaVersion": 1' in completed.stdout
    status, report = doctor_json(home, "app-server", "daemon")
    assert status == 0 and set(report["checks"]) == CHECK_IDS


def test_status_reports_who_listens_and_the_disk(home: Home) -> None:
    home.ok("start")
    status = home.ok("status", "--json")
    record = home.record()
    assert record is not None
    assert status["appServer"]["listener"]["pid"] == record["appServerPid"]
    assert status["appServer"]["unreachable"] is None and status["appServer"]["probeError"] is None
    assert status["disk"]["freeBytes"] > 0 and status["disk"]["path"] == str(home.path)


def test_without_an_install_doctor_fails_naming_install_sh(bare_home: Home) -> None:
    status, report = doctor_json(bare_home)
    managed = report["checks"]["install.managed"]
    assert status == 1 and report["overallStatus"] == "fail"
    assert managed["status"] == "fail" and "install.sh" in managed["remediation"]
    assert [name for name, c in report["checks"].items() if c["status"] == "fail"] == [
        "install.managed"
    ]

    result = bare_home.run("doctor")
    lines = result.stdout.splitlines()
    assert result.returncode == 1 and result.stderr == ""
    [row] = [index for index, line in enumerate(lines) if line.startswith("[XX] install.managed")]
    assert "install.sh" in lines[row + 1] and lines[row + 1].lstrip().startswith("-> ")
    assert lines[-1].startswith("overall: fail (")
    assert "✓" not in result.stdout and "✗" not in result.stdout  # a pipe: ASCII marks


def test_an_installed_release_has_its_parts_checked(installed: Home) -> None:
    _, report = doctor_json(installed)
    managed, sources = report["checks"]["install.managed"], report["checks"]["updater.source"]
    assert managed["status"] == "ok", managed
    assert "the reference app-server, codexd 0.1.0" in managed["summary"]
    codexd = installed.path / "packages" / "codexd" / managed["details"]["codexdRelease"]
    assert codexd.is_dir()
    assert sources["status"] == "ok" and sources["details"]["codexdSourcePresent"] is True
    assert sources["details"]["codexSource"] == "reference"
    assert report["checks"]["install.codexd"]["details"]["command"] == str(
        Path(installed.env["CODEXD_BIN_DIR"]) / "codexd"
    )

    shutil.rmtree(codexd)
    status, report = doctor_json(installed)
    managed = report["checks"]["install.managed"]
    assert status == 1 and managed["status"] == "fail"
    assert str(codexd) in managed["summary"] and "install.sh" in managed["remediation"]


def test_remote_control_with_codex_signed_out_warns_with_codex_login(
    tmp_path: Path, channel: Path
) -> None:
    """codex answers `login status` from the home, as codex 0.169.0 does."""
    codex = tmp_path / "codex"
    codex.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = --version ]; then echo "codex-cli 0.169.0"; exit 0; fi\n'
        '[ "$*" = "login status" ] || exit 9\n'
        'if [ -f "$CODEX_HOME/auth.json" ]; then echo "Logged in using ChatGPT" >&2; exit 0; fi\n'
        'echo "Not logged in" >&2; exit 1\n'
    )
    codex.chmod(0o755)
    home = make_home(tmp_path / "home")
    try:
        home.env.update(CODEXD_BIN_DIR=str(tmp_path / "bin"))
        install(home, channel, CODEXD_CODEX_SOURCE=f"path:{codex}")
        _, report = doctor_json(home)
        login = report["checks"]["codex.login"]
        assert login["status"] == "ok" and "remote control is off" in login["summary"]

        home.ok("enable-remote-control")
        _, report = doctor_json(home)
        login = report["checks"]["codex.login"]
        assert login["status"] == "warning", login
        assert "codex is not signed in" in login["summary"]
        managed = home.paths.managed_binary
        assert login["remediation"].startswith(f"`CODEX_HOME={home.path} {managed} login`")
        assert login["details"]["signIn"] == "signedOut"

        (home.path / "auth.json").write_text("{}")
        _, report = doctor_json(home)
        login = report["checks"]["codex.login"]
        assert login["status"] == "ok" and "Logged in using ChatGPT" in login["summary"]
    finally:
        home.cleanup()


def test_a_home_that_is_not_a_directory_is_the_only_check(bare_home: Home, tmp_path: Path) -> None:
    """Nothing under a home that is not ours to trust is read."""
    not_a_home = tmp_path / "file"
    not_a_home.write_text("")
    bare_home.env["CODEX_HOME"] = str(not_a_home)
    status, report = doctor_json(bare_home)
    assert status == 1 and list(report["checks"]) == ["home"]
    home = report["checks"]["home"]
    assert (
        home["status"] == "fail" and f"{not_a_home} is a file, not a directory" in home["summary"]
    )
    assert "owner" not in home["remediation"]
    assert "point CODEX_HOME at a directory" in home["remediation"]
    assert f"remove or rename the file {not_a_home}" in home["remediation"]


def test_a_message_codex_handled_is_no_error_and_no_colour_code_is_quoted(home: Home) -> None:
    log = home.paths.app_server_log
    log.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    log.write_text(f"codexd keeper[7]: launched app-server pid 8\n{CODEX_BUBBLEWRAP_LINE}\n")
    _, report = doctor_json(home)
    check = report["checks"]["logs.errors"]
    assert check["status"] == "ok", check
    assert check["details"]["app-server"]["handledByCodex"] == 1

    with log.open("a") as out:
        out.write("\x1b[2m2026-11-26T00:33:01Z\x1b[0m \x1b[31mERROR\x1b[0m codex_core: boom\n")
    _, report = doctor_json(home)
    check = report["checks"]["logs.errors"]
    assert check["status"] == "warning" and "1 of the last 3 lines" in check["summary"]
    assert check["details"]["app-server"]["latest"] == "2026-11-26T00:33:01Z ERROR codex_core: boom"
    as_json = home.run("doctor", "--json").stdout
    assert "\\u001b" not in as_json and "\x1b" not in as_json
    piped = home.run("doctor").stdout
    assert "[!!] logs.errors" in piped and "ERROR codex_core: boom" in piped
    assert "\x1b" not in piped


def test_a_crash_loop_fails_naming_codexd_start(home: Home) -> None:
    home.env.update(FAST, CODEXD_RESTART_BURST="3")
    install_binary(home, "( sleep 2; kill -SEGV $$ ) &")  # answers, then dies by SIGSEGV
    keeper = home.ok("start")["pid"]
    wait_for(lambda: is_gone(keeper), 3 * SETTLE_SECONDS, "the keeper to give up")

    status, report = doctor_json(home)
    check = report["checks"]["appServer.keeper"]
    assert status == 1 and check["status"] == "fail"
    assert "3 failures within 120 s" in check["summary"] and "SIGSEGV" in check["summary"]
    assert "codexd start" in check["remediation"]
    assert check["details"]["status"] == "failed"
    result = home.run("doctor")
    assert result.returncode == 1
    assert any(line.startswith("[XX] appServer.keeper") for line in result.stdout.splitlines())


def start_unmanaged(home: Home) -> subprocess.Popen[str]:
    server = home.spawn("app-server", "--listen", "unix://")

    def answers() -> bool:
        assert server.poll() is None, f"the unmanaged app-server exited {server.returncode}"
        return home.run("version").returncode == 0

    wait_for(answers, what="the unmanaged app-server to answer")
    return server


def test_an_unmanaged_app_server_is_named_by_the_socket_check(home: Home) -> None:
    server = start_unmanaged(home)
    status, report = doctor_json(home)
    check = report["checks"]["appServer.socket"]
    assert check["status"] == "warning" and f"pid {server.pid}" in check["summary"]
    assert "app-server --listen unix://" in check["summary"]
    assert check["details"]["listenerPid"] == server.pid
    assert check["details"]["listenerUid"] == os.getuid()
    assert check["details"]["managed"] is None
    assert "codexd start --takeover" in check["remediation"]
    assert status == 0 and server.poll() is None  # looked at, never touched


def test_a_terminal_shows_unicode_marks(home: Home) -> None:
    """Through a pseudo-terminal, as a person runs it."""
    primary, secondary = pty.openpty()
    process = subprocess.Popen(
        [str(CODEXD), "doctor"],
        env={**home.env, "LC_ALL": "C.UTF-8"},
        stdin=subprocess.DEVNULL,
        stdout=secondary,
        stderr=secondary,
    )
    os.close(secondary)
    output = b""
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([primary], [], [], deadline - time.monotonic())
            try:
                chunk = os.read(primary, 1 << 16) if ready else b""
            except OSError:  # EIO: the terminal's other end is closed
                break
            if not chunk:
                break
            output += chunk
    finally:
        os.close(primary)
        process.wait(timeout=60)
    text = output.decode()
    assert "✓" in text and "[ok]" not in text
    assert "\033[32m✓\033[0m home" in text


# -- what people read (pure) ------------------------------------------------------------------


def report(*verdicts: tuple[str, Verdict]) -> DoctorReport:
    moment = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
    results = [CheckResult(name, "x", verdict, 1.0) for name, verdict in verdicts]
    return DoctorReport(Path("/h"), moment, results)


SAMPLE = report(
    ("home", Verdict(OK, "yours")),
    ("appServer.keeper", Verdict(FAIL, "the keeper gave up", {}, "`codexd start`")),
    ("disk", Verdict(WARNING, "low", {}, "free space")),
)


def test_people_read_ascii_marks_with_the_remedy_under_and_the_verdict_last() -> None:
    assert doctor_lines(SAMPLE, unicode=False) == [
        "codexd doctor for /h",
        "[ok] home              yours",
        "[XX] appServer.keeper  the keeper gave up",
        "                       -> `codexd start`",
        "[!!] disk              low",
        "                       -> free space",
        "overall: fail (1 ok, 1 warning, 1 fail)",
    ]


def test_unicode_marks_and_arrows() -> None:
    lines = doctor_lines(SAMPLE, unicode=True)
    assert [line[0] for line in lines[1:-1]] == ["✓", "✗", " ", "!", " "]
    assert lines[3].strip() == "→ `codexd start`"


def test_colour_is_only_around_the_marks_and_the_verdict() -> None:
    lines = doctor_lines(SAMPLE, unicode=True, colour=True)
    assert lines[1] == "\033[32m✓\033[0m home              yours"
    assert lines[-1].startswith("overall: \033[1;31mfail\033[0m")


@pytest.mark.parametrize(
    ("terminal", "encoding", "expected"),
    [
        (True, "utf-8", True),
        (True, "UTF8", True),
        (True, "ascii", False),
        (False, "utf-8", False),
        (True, None, False),
    ],
)
def test_unicode_only_on_a_terminal_that_shows_it(
    terminal: bool, encoding: str | None, expected: bool
) -> None:
    assert fancy_output(terminal, encoding) is expected
