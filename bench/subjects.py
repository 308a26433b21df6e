"""What is measured: one command line against one home.

- codexd as a user runs it (the bold rows): `<home>/packages/standalone/current/codex
  app-server daemon <cmd>`, the front install.sh wrote, which runs codexd's release with
  `<python> -I -S packages/codexd/<release>`; `codexd --version` through the `codexd`
  command install.sh wrote;
- the dev venv's `codexd`, on the same source and home (for comparison);
- the real codex daemon: `<home>/packages/app-server-daemon/current/bin/codex app-server
  daemon <cmd>`, the managed install it made for itself;
- the release's interpreter doing nothing (the floor under every codexd command).

Standard library only.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import CHECKOUT, COMMAND_TIMEOUT_SECONDS, BenchError
from procs import end_home

VENV_CODEXD = CHECKOUT / ".venv" / "bin" / "codexd"
CONCURRENT_STARTS = 20


@dataclass(frozen=True)
class Subject:
    key: str  # short, for JSON and the chart
    label: str  # for the table
    home: Path
    daemon_cli: tuple[str, ...]  # `<daemon_cli> app-server daemon <command>`
    version_argv: tuple[str, ...]  # what prints its version, as a user runs it
    is_codex: bool = False
    # A comparison subject: if it fails, it is dropped from the case (and the failure
    # noted) instead of failing the run.
    optional: bool = False

    def argv(self, command: str) -> list[str]:
        return [*self.daemon_cli, "app-server", "daemon", command]

    def env(self) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("CODEXD_") and key != "CODEX_HOME"
        }
        env["CODEX_HOME"] = str(self.home)
        return env


@dataclass(frozen=True)
class InstalledRelease:
    """codexd as install.sh installed it into a home."""

    name: str  # the codexd release, `packages/codexd/<name>`
    front: Path  # `<front> app-server daemon <cmd>`, as a user runs it
    codexd: Path  # the `codexd` command install.sh wrote (CODEXD_BIN_DIR)
    python: Path  # the interpreter the release runs on (`packages/standalone/python`)
    library: Path  # `packages/codexd/<name>`: codexd's modules and its dependencies
    codex_binary: Path  # the real codex the front execs, `packages/codex/<v>-<hex>/bin/codex`

    def python_argv(self) -> tuple[str, ...]:
        """The interpreter as the front starts it (isolated, no site); the code run
        puts `library` on sys.path itself, as `python -I -S <library>` does."""
        return (str(self.python), "-I", "-S")


@dataclass(frozen=True)
class Installed:
    """What setup made: the homes and the commands in them."""

    source: Path  # what the release was built from
    release: InstalledRelease
    release_home: Path  # codexd as installed, the real codex behind its front
    codex_home: Path  # the real codex daemon
    codex_managed: Path  # the managed binary codex installed for itself
    real_codex: Path  # the npm binary both homes copied
    codex_version: str


def make_subjects(installed: Installed, venv_cli: tuple[str, ...]) -> dict[str, Subject]:
    """Every subject, by key."""
    release = installed.release
    front = (str(release.front),)
    codexd_version = (str(release.codexd), "--version")
    venv_version = (*venv_cli, "--version")
    subjects = [
        Subject(
            "release",
            "installed codexd (current/codex)",
            installed.release_home,
            front,
            codexd_version,
        ),
        Subject(
            "venv",
            "venv codexd",
            installed.release_home,
            venv_cli,
            venv_version,
            optional=True,
        ),
        Subject(
            "floor",
            "interpreter floor (release python -I -S -c pass)",
            installed.release_home,
            (),
            (*release.python_argv(), "-c", "pass"),
        ),
        Subject(
            "codex",
            "codex",
            installed.codex_home,
            (str(installed.codex_managed),),
            (str(installed.codex_managed), "--version"),
            is_codex=True,
        ),
    ]
    return {subject.key: subject for subject in subjects}


def parse_json(stdout: str) -> dict[str, Any]:
    """The last line of a command's output as a JSON object; {} when it is not one."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    if not lines:
        return {}
    try:
        value = json.loads(lines[-1])
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def run_command(subject: Subject, command: str, expect: str | None) -> tuple[float, dict[str, Any]]:
    """Run one lifecycle command; its wall time and its JSON."""
    argv = subject.argv(command)
    begin = time.perf_counter()
    completed = subprocess.run(
        argv,
        env=subject.env(),
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=COMMAND_TIMEOUT_SECONDS,
        check=False,
    )
    elapsed = time.perf_counter() - begin
    output = parse_json(completed.stdout)
    if completed.returncode != 0 or (expect is not None and output.get("status") != expect):
        raise BenchError(
            f"{subject.label}: `{' '.join(argv)}` exited {completed.returncode} "
            f"(wanted status {expect!r}):\nstdout: {completed.stdout.strip()[-1500:]}\n"
            f"stderr: {completed.stderr.strip()[-1500:]}"
        )
    return elapsed, output


def run_version(subject: Subject) -> float:
    """Wall time of the subject's version command line."""
    begin = time.perf_counter()
    completed = subprocess.run(
        subject.version_argv,
        env=subject.env(),
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=COMMAND_TIMEOUT_SECONDS,
        check=False,
    )
    elapsed = time.perf_counter() - begin
    if completed.returncode != 0:
        raise BenchError(
            f"{subject.label}: `{' '.join(subject.version_argv)}` exited "
            f"{completed.returncode}: {completed.stderr.strip()[-1500:]}"
        )
    return elapsed


def concurrent_starts(subject: Subject) -> float:
    """Seconds from launching CONCURRENT_STARTS `start`s at once until all returned;
    exactly one must answer `started`, the others `alreadyRunning`."""
    env = subject.env()
    begin = time.perf_counter()
    processes = [
        subprocess.Popen(
            subject.argv("start"),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        for _ in range(CONCURRENT_STARTS)
    ]
    try:
        outputs = [process.communicate(timeout=COMMAND_TIMEOUT_SECONDS) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.communicate()
    elapsed = time.perf_counter() - begin
    statuses = []
    for process, (stdout, stderr) in zip(processes, outputs, strict=True):
        if process.returncode != 0:
            raise BenchError(
                f"{subject.label}: one of {CONCURRENT_STARTS} concurrent starts exited "
                f"{process.returncode}: {stderr.strip()[-1500:]}"
            )
        statuses.append(parse_json(stdout).get("status"))
    if statuses.count("started") != 1 or statuses.count("alreadyRunning") != len(statuses) - 1:
        raise BenchError(f"{subject.label}: concurrent starts answered {statuses}")
    return elapsed


def ensure_running(subject: Subject) -> None:
    run_command(subject, "start", None)


def ensure_nothing_runs(subject: Subject) -> None:
    """No process of the home: `stop`, then SIGTERM what is left (the updaters outlive
    `stop`)."""
    subprocess.run(
        subject.argv("stop"),
        env=subject.env(),
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=COMMAND_TIMEOUT_SECONDS,
        check=False,
    )
    end_home(subject.home)


# -- the dev venv's codexd -------------------------------------------------------------

# The venv's `codexd` script on another source: the editable install's finder (which
# maps codexd's packages to the work tree, ahead of sys.path) taken out, the source put
# first. A file, not `-c`: codexd relaunches itself (the keeper) as `python <argv[0]>`.
VENV_ON_SOURCE = """import sys
sys.meta_path[:] = [
    finder for finder in sys.meta_path
    if not type(finder).__module__.startswith("__editable__")
]
sys.path.insert(0, {source!r})
from {module} import main
sys.exit(main())
"""


def venv_command(source: Path | None, scratch: Path) -> tuple[str, ...]:
    """The dev venv's codexd: its entry point as is (the work tree), or a script in
    `scratch` that runs it on `source`."""
    if source is None:
        return (str(VENV_CODEXD),)
    script = scratch / "venv-codexd"
    script.write_text(VENV_ON_SOURCE.format(source=str(source), module=entry_module(source)))
    return (str(VENV_CODEXD.with_name("python")), str(script))


def entry_module(source: Path) -> str:
    """The module of the `codexd` console script in the source's pyproject.toml."""
    for line in (source / "pyproject.toml").read_text().splitlines():
        name, _, value = line.partition("=")
        if name.strip() == "codexd":
            return value.strip().strip('"').partition(":")[0]
    raise BenchError(f"no codexd script in {source / 'pyproject.toml'}")
