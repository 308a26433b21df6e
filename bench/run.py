#!/usr/bin/env python3
"""Benchmark codexd against the real codex daemon (`@openai/codex@0.169.0`).

    python3 bench/run.py            # the full run, a few minutes
    python3 bench/run.py --quick    # about half the samples
    python3 bench/run.py --worktree # codexd from the work tree, uncommitted edits and all

Both daemons are measured in the same run on the same machine, alternately (the
order rotates every trial), with warm-up trials first; each case reports medians
and the codexd/codex ratio. codexd is measured as a user runs it: a release built
with `release/publish.py` and installed by `install.sh` into a temporary
CODEX_HOME, invoked as `<home>/packages/standalone/current/codex app-server daemon
<cmd>`; the dev venv's `codexd` (its interpreter and dependencies, the same source) is
measured beside it for comparison. The source is the checkout's committed HEAD,
exported, unless --worktree. The real codex
is invoked the same way, from the managed install it makes for itself on its first
`start` (`<home>/packages/app-server-daemon/current/bin/codex`).

Writes `bench/results/results.{md,json,png}`. The chart needs matplotlib, which goes
into a benchmark-only venv (`bench/.venv`), never into the project's dependencies;
the measurements themselves use only the standard library.

Every process started is ended (found by the CODEX_HOME in its environment), on
success, failure or Ctrl-C, and the temporary homes are removed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
CHECKOUT = BENCH.parent
RESULTS = BENCH / "results"
BENCH_VENV = BENCH / ".venv"
VENV_CODEXD = CHECKOUT / ".venv" / "bin" / "codexd"
sys.path.insert(0, str(BENCH))

from procs import end_home, kill_home, memory_kib  # noqa: E402
from real_codex import CODEX_VERSION, ensure_real_codex  # noqa: E402

COMMAND_TIMEOUT_SECONDS = 180.0
CONCURRENT_STARTS = 20
DIGEST_BYTES = 300 * 1000 * 1000
DIGEST_TARGET_SECONDS = 0.5
# What the author measured for codex's updater; ours is measured in the run.
AUTHOR_CODEX_UPDATER_RSS_MB = 48.6
MATPLOTLIB = "matplotlib"


@dataclass(frozen=True)
class Sizes:
    """Warm-up and measured trials per case."""

    quick_cli: tuple[int, int]  # version, start when running
    restart: tuple[int, int]
    stop: tuple[int, int]
    concurrent: tuple[int, int]
    rss_trials: int
    rss_settle_seconds: float
    digest: tuple[int, int]
    profile: int


FULL = Sizes((3, 15), (2, 9), (1, 9), (1, 5), 3, 5.0, (1, 7), 7)
QUICK = Sizes((2, 5), (1, 3), (1, 3), (1, 2), 2, 2.0, (1, 3), 3)


class BenchError(Exception):
    """A command failed or answered something unexpected; the message says which."""


def progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


# -- subjects: one daemon CLI against one home -------------------------------------


@dataclass(frozen=True)
class Subject:
    key: str  # short, for JSON and the chart
    label: str  # for the table
    cli: tuple[str, ...]
    home: Path
    is_codex: bool = False
    extra_env: tuple[tuple[str, str], ...] = ()
    # A comparison subject: if it fails, it is dropped from the case (and the failure
    # noted) instead of failing the run.
    optional: bool = False

    def argv(self, command: str) -> list[str]:
        return [*self.cli, "app-server", "daemon", command]

    def env(self) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("CODEXD_", "PEX_")) and key != "CODEX_HOME"
        }
        env["CODEX_HOME"] = str(self.home)
        env.update(self.extra_env)
        return env


def parse_json(stdout: str) -> dict[str, Any]:
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


def ensure_running(subject: Subject) -> None:
    run_command(subject, "start", None)


def ensure_nothing_runs(subject: Subject) -> None:
    """No app-server and no updater of the home: `stop`, then SIGTERM what is left
    (codex's updater outlives `stop`)."""
    subprocess.run(
        subject.argv("stop"),
        env=subject.env(),
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=COMMAND_TIMEOUT_SECONDS,
        check=False,
    )
    end_home(subject.home)


def rotations(subjects: list[Subject], trials: int) -> Iterator[tuple[int, list[Subject]]]:
    """Each trial runs every subject once; the order rotates so none always goes first."""
    for trial in range(trials):
        shift = trial % len(subjects)
        yield trial, subjects[shift:] + subjects[:shift]


# Failures of optional subjects, for the report's notes.
DROPPED: list[str] = []


# -- results -------------------------------------------------------------------------


@dataclass
class Case:
    key: str
    title: str
    unit: str  # "s" or "MB"
    target: str  # human
    target_ratio: float | None  # codexd/codex must be <= this
    target_absolute: float | None = None  # codexd median must be < this (same unit)
    codex_key: str = "codex"
    samples: dict[str, list[float]] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    primary: str = ""  # the subject key the target is judged on
    note: str = ""


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def case_rows(case: Case) -> list[dict[str, Any]]:
    rows = []
    codex_median = median(case.samples[case.codex_key])
    for key, values in case.samples.items():
        if key == case.codex_key:
            continue
        codexd_median = median(values)
        ratio = codexd_median / codex_median if codex_median else float("nan")
        if case.target_absolute is not None:
            met = codexd_median < case.target_absolute
        elif case.target_ratio is not None:
            met = ratio <= case.target_ratio
        else:
            met = None
        rows.append(
            {
                "case": case.key,
                "title": case.title,
                "subject": key,
                "label": case.labels[key],
                "primary": key == case.primary,
                "unit": case.unit,
                "codexd_median": codexd_median,
                "codex_median": codex_median,
                "codex_label": case.labels[case.codex_key],
                "ratio": ratio,
                # Minimums: the least disturbed trial, a check on medians when other
                # work shares the machine.
                "codexd_min": min(values),
                "codex_min": min(case.samples[case.codex_key]),
                "ratio_of_minimums": min(values) / min(case.samples[case.codex_key]),
                "target": case.target,
                "target_ratio": case.target_ratio,
                "target_absolute": case.target_absolute,
                "met": met,
                "n": len(values),
                "codex_n": len(case.samples[case.codex_key]),
            }
        )
    rows.sort(key=lambda row: not row["primary"])
    return rows


# -- the cases -----------------------------------------------------------------------


def timed_cases(
    key: str,
    title: str,
    subjects: list[Subject],
    sizes: tuple[int, int],
    measure: Callable[[Subject], float],
    prepare: Callable[[Subject], None] | None = None,
) -> dict[str, list[float]]:
    warm, runs = sizes
    samples: dict[str, list[float]] = {subject.key: [] for subject in subjects}
    progress(f"{title}: {warm} warm-up + {runs} measured trials of {len(subjects)} subjects")
    dropped: set[str] = set()
    for trial, order in rotations(subjects, warm + runs):
        for subject in order:
            if subject.key in dropped:
                continue
            try:
                if prepare is not None:
                    prepare(subject)
                seconds = measure(subject)
            except BenchError as error:
                if not subject.optional:
                    raise
                progress(f"{title}: dropping {subject.label}: {error}")
                DROPPED.append(f"{title}: {subject.label} dropped after it failed: {error}")
                dropped.add(subject.key)
                ensure_nothing_runs(subject)
                continue
            if trial >= warm:
                samples[subject.key].append(seconds)
    return {key: values for key, values in samples.items() if key not in dropped}


def concurrent_starts(subject: Subject) -> float:
    """Seconds from launching CONCURRENT_STARTS `start`s at once until all returned."""
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


def record_pid(path: Path) -> int | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    pid = value.get("pid") if isinstance(value, dict) else None
    return pid if isinstance(pid, int) else None


def idle_memory(
    subjects: list[Subject], trials: int, settle: float
) -> dict[str, dict[str, list[float]]]:
    """`bootstrap`, wait `settle` seconds, read the updater's and the app-server's memory.

    Returns {subject: {"updater_rss": [MB...], "updater_pss": ..., "app_server_rss": ...}}."""
    records = {
        # codexd: app-server-daemon/{app-server,app-server-updater}.pid;
        # codex 0.169.0: app-server-daemon/{daemon,daemon-updater}.pid.
        False: ("app-server.pid", "app-server-updater.pid"),
        True: ("daemon.pid", "daemon-updater.pid"),
    }
    found: dict[str, dict[str, list[float]]] = {subject.key: {} for subject in subjects}
    progress(f"idle memory: {trials} bootstraps of {len(subjects)} subjects, {settle:g} s idle")
    for _, order in rotations(subjects, trials):
        for subject in order:
            ensure_nothing_runs(subject)
            run_command(subject, "bootstrap", "bootstrapped")
            time.sleep(settle)
            server_name, updater_name = records[subject.is_codex]
            state_dir = subject.home / "app-server-daemon"
            for role, name in (("app_server", server_name), ("updater", updater_name)):
                pid = record_pid(state_dir / name)
                memory = memory_kib(pid) if pid is not None else {}
                if "rss" not in memory:
                    raise BenchError(f"{subject.label}: no live {role} in {state_dir / name}")
                for kind, kib in memory.items():
                    found[subject.key].setdefault(f"{role}_{kind}", []).append(kib / 1024)
            ensure_nothing_runs(subject)
    return found


DIGEST_SNIPPET = """
import sys, time
from pathlib import Path
from supervisor.digest import file_digest
begin = time.perf_counter()
file_digest(Path(sys.argv[1]))
print(time.perf_counter() - begin)
"""


def make_blob(path: Path, size: int) -> None:
    block = os.urandom(1 << 20)
    with open(path, "wb") as file:
        written = 0
        while written < size:
            chunk = block[: min(len(block), size - written)]
            file.write(chunk)
            written += len(chunk)


def digest_case(release: Path, blob: Path, sizes: tuple[int, int]) -> dict[str, list[float]]:
    warm, runs = sizes
    samples: dict[str, list[float]] = {
        "codexd_file_digest": [],
        "codexd_process": [],
        "sha256sum": [],
    }
    env = {key: value for key, value in os.environ.items() if not key.startswith("PEX_")}
    env["PEX_INTERPRETER"] = "1"
    progress(f"digest of {blob.stat().st_size / 1e6:.0f} MB: {warm} warm-up + {runs} trials")
    for trial in range(warm + runs):
        order = ["codexd", "sha256sum"] if trial % 2 == 0 else ["sha256sum", "codexd"]
        for who in order:
            begin = time.perf_counter()
            if who == "codexd":
                completed = subprocess.run(
                    [str(release), "-c", DIGEST_SNIPPET, str(blob)],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                    stdin=subprocess.DEVNULL,
                )
                process_seconds = time.perf_counter() - begin
                if trial >= warm:
                    samples["codexd_file_digest"].append(float(completed.stdout.split()[-1]))
                    samples["codexd_process"].append(process_seconds)
            else:
                subprocess.run(
                    ["sha256sum", str(blob)],
                    capture_output=True,
                    check=True,
                    stdin=subprocess.DEVNULL,
                )
                if trial >= warm:
                    samples["sha256sum"].append(time.perf_counter() - begin)
    return samples


def wall_times(argv: list[str], runs: int, env: dict[str, str] | None = None) -> list[float]:
    times = []
    for _ in range(runs + 1):  # the first warms the page cache
        begin = time.perf_counter()
        subprocess.run(
            argv,
            capture_output=True,
            check=True,
            stdin=subprocess.DEVNULL,
            env=env,
            timeout=COMMAND_TIMEOUT_SECONDS,
        )
        times.append(time.perf_counter() - begin)
    return times[1:]


def release_interpreter(release: Path) -> str:
    """The interpreter a --venv --sh-boot pex execs (its venv python)."""
    completed = subprocess.run(
        [str(release), "-c", "import sys; print(sys.executable)"],
        env={**os.environ, "PEX_INTERPRETER": "1"},
        capture_output=True,
        text=True,
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return completed.stdout.strip()


def profile(
    release: Path, real_codex: Path, homes: dict[str, Path], runs: int, venv_cli: tuple[str, ...]
) -> dict[str, float]:
    """Medians of what codexd's latency is made of (every home's app-server running)."""
    progress(f"profile: {runs} runs of each step")
    interpreter = release_interpreter(release)
    clean_env = {key: value for key, value in os.environ.items() if not key.startswith("PEX_")}
    steps: dict[str, list[float]] = {
        "python -I -c pass (interpreter start)": wall_times(
            [interpreter, "-I", "-c", "pass"], runs
        ),
        "python -I -S -c pass (no site)": wall_times([interpreter, "-I", "-S", "-c", "pass"], runs),
        "release --version (sh boot + pex + imports)": wall_times(
            [str(release), "--version"], runs, clean_env
        ),
        "venv codexd --version": wall_times([*venv_cli, "--version"], runs),
        "real codex --version": wall_times([str(real_codex), "--version"], runs),
    }
    interpreter_env = {**clean_env, "PEX_INTERPRETER": "1"}
    arguments = [f"{name}={home}" for name, home in homes.items()]
    for _ in range(runs + 1):
        completed = subprocess.run(
            [str(release), str(BENCH / "profile_steps.py"), *arguments],
            env=interpreter_env,
            capture_output=True,
            text=True,
            check=True,
            stdin=subprocess.DEVNULL,
        )
        for name, seconds in json.loads(completed.stdout.splitlines()[-1]).items():
            steps.setdefault(f"in-process: {name}", []).append(seconds)
    # The first in-process run warmed the page cache: drop it.
    return {
        name: median(values[1:] if name.startswith("in-process") else values)
        for name, values in steps.items()
    }


# -- setup ---------------------------------------------------------------------------


def ensure_plot_venv() -> Path | None:
    """bench/.venv with matplotlib; None (and a warning) if it cannot be made."""
    python = BENCH_VENV / "bin" / "python"
    check = [str(python), "-c", "import matplotlib"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    progress(f"creating {BENCH_VENV} with {MATPLOTLIB} (for the chart only)")
    try:
        subprocess.run(
            [sys.executable, "-m", "venv", "--clear", str(BENCH_VENV)],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", MATPLOTLIB],
            check=True,
            capture_output=True,
        )
    except subprocess.CalledProcessError as error:
        tail = (error.stdout or b"").decode()[-800:] + (error.stderr or b"").decode()[-800:]
        progress(f"cannot install {MATPLOTLIB} into {BENCH_VENV}; no chart: {tail}")
        return None
    return python


def source_tree(root: Path, worktree: bool) -> Path:
    """What codexd is built from: the committed HEAD, exported (the default, so that
    edits in progress in the checkout do not leak in), or the work tree as it is."""
    if worktree:
        return CHECKOUT
    source = root / "src"
    source.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(CHECKOUT), "archive", "--format=tar", "HEAD"],
        capture_output=True,
        check=True,
    )
    subprocess.run(["tar", "-x", "-C", str(source)], input=archive.stdout, check=True)
    return source


# The venv's `codexd` script, with the editable install's finder (which maps codexd's
# packages to the work tree, ahead of sys.path) taken out and `source` put first.
VENV_ON_SOURCE = (
    "import sys; "
    "sys.meta_path[:] = [f for f in sys.meta_path "
    "if not type(f).__module__.startswith('__editable__')]; "
    "sys.path.insert(0, sys.argv.pop(1)); sys.argv[0] = 'codexd'; "
    "import importlib; "
    "main = importlib.import_module(sys.argv.pop(1)).main; sys.exit(main())"
)


def venv_command(source: Path | None) -> tuple[str, ...]:
    """The dev venv's codexd: its entry point as is (the work tree), or on `source`."""
    if source is None:
        return (str(VENV_CODEXD),)
    return (
        str(VENV_CODEXD.with_name("python")),
        "-c",
        VENV_ON_SOURCE,
        str(source),
        entry_module(source),
    )


def entry_module(source: Path) -> str:
    """The module of the `codexd` console script in the source's pyproject.toml."""
    for line in (source / "pyproject.toml").read_text().splitlines():
        name, _, value = line.partition("=")
        if name.strip() == "codexd":
            return value.strip().strip('"').partition(":")[0]
    raise BenchError(f"no codexd script in {source / 'pyproject.toml'}")


def build_and_install_release(root: Path, home: Path, source: Path) -> tuple[str, Path]:
    """Publish the source tree's release into a channel; install it into `home` the
    way a user does. Returns the release name and the installed managed binary."""
    channel = root / "channel"
    progress(f"building the codexd release from {source} (release/publish.py)")
    name = subprocess.run(
        [sys.executable, str(source / "release" / "publish.py"), "--channel", str(channel)],
        capture_output=True,
        text=True,
        check=True,
        stdin=subprocess.DEVNULL,
    ).stdout.strip()
    env = {key: value for key, value in os.environ.items() if not key.startswith("CODEXD_")}
    env.update(CODEXD_CHANNEL=str(channel), CODEX_HOME=str(home))
    completed = subprocess.run(
        ["sh", str(source / "install.sh")],
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if completed.returncode != 0:
        raise BenchError(f"install.sh into {home} failed: {completed.stderr.strip()[-1500:]}")
    managed = home / "packages" / "standalone" / "current" / "codex"
    return name, managed


def install_real_codex_for_codexd(home: Path, real_codex: Path) -> None:
    """codexd's managed layout with the real codex binary as the managed binary."""
    release = home / "packages" / "standalone" / "releases" / f"real-codex-{CODEX_VERSION}"
    release.mkdir(parents=True)
    (release / "codex").symlink_to(real_codex)
    (home / "packages" / "standalone" / "current").symlink_to(f"releases/{release.name}")


def install_codex_home(home: Path, real_codex: Path) -> Path:
    """Let the real codex make its own managed install in `home` (its first `start`
    copies itself to `packages/app-server-daemon/current/bin/codex`); return that path."""
    progress("letting the real codex install its managed layout (first start)")
    home.mkdir(parents=True, exist_ok=True)  # codex refuses a CODEX_HOME that does not exist
    installer = Subject("codex-setup", "codex (npm binary)", (str(real_codex),), home, True)
    _, output = run_command(installer, "start", "started")
    managed = Path(output["managedCodexPath"])
    ensure_nothing_runs(installer)
    if not managed.is_file():
        raise BenchError(f"codex reported managedCodexPath {managed}, which is not a file")
    return managed


def machine_facts(worktree: bool) -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    described = subprocess.run(
        ["git", "-C", str(CHECKOUT), "describe", "--always", *(["--dirty"] if worktree else [])],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "checkout": (described or "unknown") + (" (work tree)" if worktree else " (HEAD)"),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_start": os.getloadavg(),
    }


# -- report --------------------------------------------------------------------------


def fmt(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value * 1000:.0f} ms" if value < 10 else f"{value:.1f} s"
    return f"{value:.1f} {unit}"


def write_markdown(report: dict[str, Any], path: Path) -> None:
    rows = report["rows"]
    facts = report["machine"]
    lines = [
        "# codexd vs codex: benchmark results",
        "",
        f"Run {report['finished']} with `{report['command']}` on {facts['cpus']} CPUs "
        f"({facts['cpu']}), Linux {facts['kernel']}, Python {facts['python']}; load average "
        f"{facts['loadavg_start'][0]:.2f} at the start, {facts['loadavg_end'][0]:.2f} at the "
        f"end. codexd release `{report['release']}` (checkout `{facts['checkout']}`) vs real "
        f"codex {CODEX_VERSION}; "
        "medians of alternating trials after warm-up.",
        "",
        "| case | codexd median | codex median | ratio | target | met? | ratio of minimums |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        name = f"{row['title']}: {row['label']}"
        if row["primary"]:
            name = f"**{name}**"
        met = "n/a" if row["met"] is None else ("yes" if row["met"] else "**no**")
        lines.append(
            f"| {name} | {fmt(row['codexd_median'], row['unit'])} | "
            f"{fmt(row['codex_median'], row['unit'])} ({row['codex_label']}) | "
            f"{row['ratio']:.2f}x | {row['target']} | {met} | {row['ratio_of_minimums']:.2f}x |"
        )
    lines += [
        "",
        "Bold rows are codexd as a user runs it (the target is judged on them); the "
        'others are for comparison. "release" is the pex built by '
        '`release/publish.py` and installed by `install.sh`; "venv" is the dev '
        'venv\'s `codexd`; "codexd app-server" / "real codex app-server" is what the '
        "home's managed binary serves. The last column, the ratio of the fastest "
        "trials, is a check on the medians when other work shares the machine (see the "
        "load average above).",
        "",
    ]
    memory = report.get("memory", {})
    if memory:
        lines += ["## Idle memory after `bootstrap` (MB, medians)", ""]
        lines += ["| process | RSS | PSS | USS |", "| --- | --- | --- | --- |"]
        for subject, values in memory.items():
            for role in ("updater", "app_server"):
                cells = [
                    fmt(median(values.get(f"{role}_{kind}", [])), "MB")
                    for kind in ("rss", "pss", "uss")
                ]
                lines.append(f"| {subject} {role.replace('_', '-')} | " + " | ".join(cells) + " |")
        lines += [
            "",
            f"The issue's author measured codex's updater at {AUTHOR_CODEX_UPDATER_RSS_MB} MB RSS.",
            "",
        ]
    if report.get("profile"):
        lines += ["## Where codexd's time goes (medians)", "", "| step | time |", "| --- | --- |"]
        for name, seconds in report["profile"].items():
            lines.append(f"| {name} | {seconds * 1000:.1f} ms |")
        lines.append("")
    if report.get("notes"):
        lines += ["## Notes", ""] + [f"- {note}" for note in report["notes"]] + [""]
    path.write_text("\n".join(lines))


def plot(python: Path | None, results_json: Path, png: Path) -> None:
    if python is None:
        return
    completed = subprocess.run(
        [str(python), str(BENCH / "plot.py"), str(results_json), str(png)],
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        progress(f"the chart failed: {completed.stderr.strip()[-1500:]}")


# -- main ----------------------------------------------------------------------------


def run(args: argparse.Namespace, root: Path, homes: list[Path]) -> dict[str, Any]:
    sizes = QUICK if args.quick else FULL
    facts = machine_facts(args.worktree)
    real_codex = ensure_real_codex()

    h_rel = root / "h-rel"  # codexd release, its own app-server
    h_real = root / "h-real"  # codexd, the real codex binary as managed binary
    h_codex = root / "h-codex"  # the real codex daemon
    homes.extend([h_rel, h_real, h_codex])
    source = source_tree(root, args.worktree)
    release_name, release = build_and_install_release(root, h_rel, source)
    install_real_codex_for_codexd(h_real, real_codex)
    codex_managed = install_codex_home(h_codex, real_codex)

    rel = Subject("release", "release, codexd app-server", (str(release),), h_rel)
    # The dev venv's entry point; by default made to run the same source as the release.
    venv_cli = venv_command(None if args.worktree else source)
    venv = Subject("venv", "venv, codexd app-server", venv_cli, h_rel, False, (), True)
    rel_real = Subject("release+codex", "release, real codex app-server", (str(release),), h_real)
    venv_real = Subject(
        "venv+codex",
        "venv, real codex app-server",
        venv_cli,
        h_real,
        False,
        (),
        True,
    )
    codex = Subject("codex", "codex", (str(codex_managed),), h_codex, is_codex=True)
    labels = {s.key: s.label for s in (rel, venv, rel_real, venv_real, codex)}

    cases: list[Case] = []

    def add(case: Case, samples: dict[str, list[float]], primary: str) -> None:
        case.samples, case.primary = samples, primary
        case.labels = {key: labels.get(key, key) for key in samples}
        cases.append(case)

    # 1, 2: version and start with the app-server running.
    running = [rel, venv, rel_real, codex]
    for subject in running:
        ensure_running(subject)
    add(
        Case("version", "version (running)", "s", "<= 2.0x", 2.0),
        timed_cases(
            "version",
            "version",
            running,
            sizes.quick_cli,
            lambda s: run_command(s, "version", "running")[0],
        ),
        "release",
    )
    add(
        Case("start_running", "start (already running)", "s", "<= 2.0x", 2.0),
        timed_cases(
            "start_running",
            "start when running",
            running,
            sizes.quick_cli,
            lambda s: run_command(s, "start", "alreadyRunning")[0],
        ),
        "release",
    )
    result: dict[str, Any] = {}
    if not args.no_profile:
        result["profile"] = profile(
            release,
            real_codex,
            {"codexd app-server": h_rel, "real codex app-server": h_real},
            sizes.profile,
            venv_cli,
        )

    # 3: restart, the same real codex binary under both daemons.
    add(
        Case("restart", "restart", "s", "<= 1.0x", 1.0),
        timed_cases(
            "restart",
            "restart",
            [rel_real, venv_real, rel, codex],
            sizes.restart,
            lambda s: run_command(s, "restart", "restarted")[0],
        ),
        "release+codex",
    )

    # 4: stop of a running app-server.
    add(
        Case("stop", "stop (running)", "s", "<= 1.0x", 1.0),
        timed_cases(
            "stop",
            "stop",
            [rel, venv, rel_real, codex],
            sizes.stop,
            lambda s: run_command(s, "stop", "stopped")[0],
            prepare=ensure_running,
        ),
        "release",
    )

    # 5: 20 concurrent starts from nothing.
    add(
        Case(
            "start20", f"{CONCURRENT_STARTS} concurrent starts (from nothing)", "s", "<= 1.0x", 1.0
        ),
        timed_cases(
            "start20",
            f"{CONCURRENT_STARTS} concurrent starts",
            [rel, venv, rel_real, codex],
            sizes.concurrent,
            concurrent_starts,
            prepare=ensure_nothing_runs,
        ),
        "release",
    )
    for subject in (rel, rel_real, codex):
        ensure_nothing_runs(subject)

    # 6: idle memory of the updater (and the app-server) after bootstrap.
    memory = idle_memory([rel, codex], sizes.rss_trials, sizes.rss_settle_seconds)
    result["memory"] = {labels[key]: values for key, values in memory.items()}
    add(
        Case("updater_rss", "updater idle RSS", "MB", "<= codex's updater", 1.0),
        {"release": memory["release"]["updater_rss"], "codex": memory["codex"]["updater_rss"]},
        "release",
    )
    add(
        Case("app_server_rss", "app-server idle RSS", "MB", "none (information)", None),
        {
            "release": memory["release"]["app_server_rss"],
            "codex": memory["codex"]["app_server_rss"],
        },
        "",
    )

    # 7: content digest of a 300 MB binary.
    blob = root / "blob-300MB"
    make_blob(blob, DIGEST_BYTES)
    digest = digest_case(release, blob, sizes.digest)
    digest_case_entry = Case(
        "digest",
        "digest of 300 MB",
        "s",
        f"< {DIGEST_TARGET_SECONDS:g} s",
        None,
        target_absolute=DIGEST_TARGET_SECONDS,
        codex_key="sha256sum",
    )
    digest_case_entry.samples = {
        "file_digest": digest["codexd_file_digest"],
        "file_digest+process": digest["codexd_process"],
        "sha256sum": digest["sha256sum"],
    }
    digest_case_entry.primary = "file_digest"
    digest_case_entry.labels = {
        "file_digest": "supervisor.digest.file_digest (in-process)",
        "file_digest+process": "the same, with interpreter start (release python)",
        "sha256sum": "sha256sum",
    }
    cases.append(digest_case_entry)

    result.update(
        release=release_name,
        machine=facts,
        cases=[
            {"key": case.key, "title": case.title, "unit": case.unit, "samples": case.samples}
            for case in cases
        ],
        rows=[row for case in cases for row in case_rows(case)],
        notes=[
            "version, start (already running): the app-server is started once, then each "
            "trial runs the command once per subject.",
            "restart: codexd's home has the real codex 0.169.0 binary as its managed binary "
            "(`packages/standalone/current/codex`); codex's home has the managed install codex "
            "made for itself (`packages/app-server-daemon/current/bin/codex`, the same bytes), "
            "so only the daemons differ. codex launches it with `--analytics-default-enabled "
            "--managed-daemon`, codexd with `app-server --listen unix://`.",
            "stop: each trial starts the app-server first (not timed), then times `stop`; "
            "the grace window is the default (CODEXD_STOP_GRACE_SECONDS unset).",
            f"{CONCURRENT_STARTS} concurrent starts: before each trial nothing of the home "
            "runs (no app-server and no updater: codex's `start` also launches its updater, "
            "codexd's does not); all are launched at once and timed until the last returns; "
            "exactly one must answer `started`, the others `alreadyRunning`.",
            "idle memory: `bootstrap`, then "
            f"{sizes.rss_settle_seconds:g} s idle, then VmRSS (and PSS/USS from smaps_rollup) "
            "of the pids in the updater's and the app-server's pid records.",
            "digest: a 300,000,000-byte file of random bytes, page-cached; codexd's "
            "`file_digest` is timed inside the release's interpreter (what a launch pays), "
            "`sha256sum` as a whole process.",
            *DROPPED,
        ],
    )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer trials (about 2 minutes)")
    parser.add_argument(
        "--worktree",
        action="store_true",
        help="build and run codexd from the checkout's work tree as it is, not its HEAD",
    )
    parser.add_argument("--no-plot", action="store_true", help="skip the chart (no bench/.venv)")
    parser.add_argument("--no-profile", action="store_true", help="skip the step profile")
    parser.add_argument(
        "--out", type=Path, default=RESULTS, help=f"results directory (default {RESULTS})"
    )
    args = parser.parse_args()

    started = time.monotonic()
    plot_python = None if args.no_plot else ensure_plot_venv()

    # Ctrl-C and SIGTERM both unwind through the cleanup below.
    def interrupted(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    root = Path(tempfile.mkdtemp(prefix="codexd-bench."))
    homes: list[Path] = []
    try:
        report = run(args, root, homes)
    except (BenchError, subprocess.CalledProcessError) as error:
        detail = error
        if isinstance(error, subprocess.CalledProcessError):
            detail = f"{error}\n{error.stderr}"  # type: ignore[assignment]
        progress(f"failed: {detail}")
        return 1
    except KeyboardInterrupt:
        progress("interrupted; cleaning up")
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # let the cleanup finish
        for home in homes:
            kill_home(home)
        shutil.rmtree(root, ignore_errors=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    report["machine"]["loadavg_end"] = os.getloadavg()
    report["finished"] = time.strftime("%Y-%m-%d %H:%M %Z")
    report["command"] = " ".join(
        [
            "python3 bench/run.py",
            *(["--quick"] if args.quick else []),
            *(["--worktree"] if args.worktree else []),
        ]
    )
    report["elapsed_seconds"] = time.monotonic() - started
    args.out.mkdir(parents=True, exist_ok=True)
    results_json = args.out / "results.json"
    results_json.write_text(json.dumps(report, indent=2) + "\n")
    write_markdown(report, args.out / "results.md")
    plot(plot_python, results_json, args.out / "results.png")
    progress(f"done in {report['elapsed_seconds']:.0f} s; results in {args.out}")
    print((args.out / "results.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
