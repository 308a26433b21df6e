"""Measurement: alternating trials of the timed cases, idle memory after `bootstrap`,
the content digest, and a profile of where codexd's time goes.

Every subject of a case runs once per trial, in an order that rotates so none always
goes first; warm-up trials are not kept. Standard library only.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from cases import (
    DIGEST_BYTES,
    DIGEST_LABELS,
    DIGEST_TARGET,
    MEMORY_CASES,
    CaseResult,
    TimedCase,
    median,
)
from common import BENCH, COMMAND_TIMEOUT_SECONDS, BenchError, progress
from procs import cmdline, memory_kib
from subjects import InstalledRelease, Subject, ensure_nothing_runs, run_command


def rotations(subjects: list[Subject], trials: int) -> Iterator[tuple[int, list[Subject]]]:
    """Each trial runs every subject once; the order rotates so none always goes first."""
    for trial in range(trials):
        shift = trial % len(subjects)
        yield trial, subjects[shift:] + subjects[:shift]


def measure_timed(
    case: TimedCase, subjects: dict[str, Subject], sizes: tuple[int, int]
) -> tuple[CaseResult, list[str]]:
    """The case's samples in seconds, and a note for each optional subject dropped
    because it failed."""
    chosen = [subjects[key] for key in case.subjects]
    warm, runs = sizes
    samples: dict[str, list[float]] = {subject.key: [] for subject in chosen}
    dropped: dict[str, str] = {}

    def attempt(subject: Subject, step: Callable[[Subject], object]) -> None:
        """Run `step`; an optional subject that fails is dropped from the case."""
        if subject.key in dropped:
            return
        try:
            step(subject)
        except BenchError as error:
            if not subject.optional:
                raise
            progress(f"{case.title}: dropping {subject.label}: {error}")
            dropped[subject.key] = f"{case.title}: {subject.label} dropped after it failed: {error}"
            ensure_nothing_runs(subject)

    def timed_trial(subject: Subject, keep: bool) -> None:
        if case.setup is not None:
            case.setup(subject)
        seconds = case.trial(subject)
        if keep:
            samples[subject.key].append(seconds)

    progress(f"{case.title}: {warm} warm-up + {runs} measured trials of {len(chosen)} subjects")
    if case.before is not None:
        for subject in chosen:
            attempt(subject, case.before)
    for trial, order in rotations(chosen, warm + runs):
        for subject in order:
            attempt(subject, functools.partial(timed_trial, keep=trial >= warm))
    if case.after is not None:
        for subject in chosen:
            case.after(subject)
    kept = {key: values for key, values in samples.items() if key not in dropped}
    labels = {key: case.labels.get(key, subjects[key].label) for key in kept}
    result = CaseResult(
        case.key,
        case.title,
        "s",
        case.target,
        kept,
        labels,
        case.bold,
        reference=case.subjects[-1],
        information=case.information,
    )
    return result, list(dropped.values())


# -- idle memory -------------------------------------------------------------------------

# (role, pid record in app-server-daemon/, its key naming the process)
CODEXD_PROCESSES = (
    ("keeper", "app-server.pid", "pid"),
    ("app_server", "app-server.pid", "appServerPid"),
    ("updater", "app-server-updater.pid", "pid"),
)
CODEX_PROCESSES = (  # codex 0.169.0
    ("app_server", "daemon.pid", "pid"),
    ("updater", "daemon-updater.pid", "pid"),
)


def record_pid(path: Path, key: str) -> int | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    pid = value.get(key) if isinstance(value, dict) else None
    return pid if isinstance(pid, int) else None


def idle_memory(
    subjects: list[Subject], trials: int, settle: float
) -> tuple[dict[str, dict[str, list[float]]], dict[str, str]]:
    """`bootstrap`, wait `settle` seconds, read the memory of every resident process.

    Returns {subject: {"keeper_rss": [MB...], "keeper_pss": ..., "updater_rss": ...}}
    and, by subject, the command line `ps` shows for the first process of each role."""
    found: dict[str, dict[str, list[float]]] = {subject.key: {} for subject in subjects}
    titles: dict[str, str] = {}
    progress(f"idle memory: {trials} bootstraps of {len(subjects)} subjects, {settle:g} s idle")
    for _, order in rotations(subjects, trials):
        for subject in order:
            ensure_nothing_runs(subject)
            run_command(subject, "bootstrap", "bootstrapped")
            time.sleep(settle)
            state_dir = subject.home / "app-server-daemon"
            pids: dict[str, int] = {}
            for role, name, key in CODEX_PROCESSES if subject.is_codex else CODEXD_PROCESSES:
                pid = record_pid(state_dir / name, key)
                memory = memory_kib(pid) if pid is not None else {}
                if pid is None or "rss" not in memory:
                    raise BenchError(f"{subject.label}: no live {role} in {state_dir / name} {key}")
                if pid in pids.values():
                    raise BenchError(f"{subject.label}: {role} has the pid of another ({pid})")
                pids[role] = pid
                titles.setdefault(f"{subject.key} {role}", " ".join(cmdline(pid)))
                for kind, kib in memory.items():
                    found[subject.key].setdefault(f"{role}_{kind}", []).append(kib / 1024)
            ensure_nothing_runs(subject)
    return found, titles


def memory_results(
    memory: dict[str, dict[str, list[float]]], labels: dict[str, str]
) -> list[CaseResult]:
    """The memory cases: per trial, the RSS of a subject's roles added up."""

    def named(who: str, roles: tuple[str, ...]) -> str:
        return f"{who} " + " + ".join(role.replace("_", "-") for role in roles)

    def together(values: dict[str, list[float]], roles: tuple[str, ...]) -> list[float]:
        return [
            sum(trial) for trial in zip(*(values[f"{role}_rss"] for role in roles), strict=True)
        ]

    return [
        CaseResult(
            case.key,
            case.title,
            "MB",
            case.target,
            {
                "release": together(memory["release"], case.roles),
                "codex": together(memory["codex"], case.codex_roles),
            },
            {"release": labels["release"], "codex": named("codex", case.codex_roles)},
            "release" if case.target.judged else "",
        )
        for case in MEMORY_CASES
    ]


# -- content digest ----------------------------------------------------------------------

# Run as `<python> -I -S -c DIGEST_SNIPPET <release library> <file>`.
DIGEST_SNIPPET = """
import sys, time
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from supervisor.digest import file_digest
begin = time.perf_counter()
file_digest(Path(sys.argv[2]))
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


def measure_digest(release: InstalledRelease, scratch: Path, sizes: tuple[int, int]) -> CaseResult:
    """codexd's file_digest of DIGEST_BYTES (in-process, and with the interpreter's
    start) against sha256sum, alternately."""
    blob = scratch / "blob-300MB"
    make_blob(blob, DIGEST_BYTES)
    warm, runs = sizes
    samples: dict[str, list[float]] = {key: [] for key in DIGEST_LABELS}
    progress(f"digest of {DIGEST_BYTES / 1e6:.0f} MB: {warm} warm-up + {runs} trials")
    for trial in range(warm + runs):
        order = ["codexd", "sha256sum"] if trial % 2 == 0 else ["sha256sum", "codexd"]
        for who in order:
            begin = time.perf_counter()
            if who == "codexd":
                completed = subprocess.run(
                    [*release.python_argv(), "-c", DIGEST_SNIPPET, str(release.library), str(blob)],
                    capture_output=True,
                    text=True,
                    check=True,
                    stdin=subprocess.DEVNULL,
                )
                process_seconds = time.perf_counter() - begin
                if trial >= warm:
                    samples["file_digest"].append(float(completed.stdout.split()[-1]))
                    samples["file_digest+process"].append(process_seconds)
            else:
                subprocess.run(
                    ["sha256sum", str(blob)],
                    capture_output=True,
                    check=True,
                    stdin=subprocess.DEVNULL,
                )
                if trial >= warm:
                    samples["sha256sum"].append(time.perf_counter() - begin)
    blob.unlink()
    return CaseResult(
        "digest",
        "digest of 300 MB",
        "s",
        DIGEST_TARGET,
        samples,
        DIGEST_LABELS,
        "file_digest",
        reference="sha256sum",
    )


# -- where codexd's time goes ------------------------------------------------------------


def wall_times(argv: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs + 1):  # the first warms the page cache
        begin = time.perf_counter()
        subprocess.run(
            argv,
            capture_output=True,
            check=True,
            stdin=subprocess.DEVNULL,
            timeout=COMMAND_TIMEOUT_SECONDS,
        )
        times.append(time.perf_counter() - begin)
    return times[1:]


def profile(
    release: InstalledRelease,
    real_codex: Path,
    running: dict[str, Subject],
    runs: int,
    venv_cli: tuple[str, ...],
) -> dict[str, float]:
    """Medians of what codexd's latency is made of, with the app-server of every home
    in `running` (by name) started first, and left running."""
    progress(f"profile: {runs} runs of each step")
    python = str(release.python)
    library = str(release.library)
    steps: dict[str, list[float]] = {
        "python -I -c pass (interpreter start)": wall_times([python, "-I", "-c", "pass"], runs),
        "python -I -S -c pass (no site)": wall_times([python, "-I", "-S", "-c", "pass"], runs),
        "installed codexd --version (the codexd command: sh, then python)": wall_times(
            [str(release.codexd), "--version"], runs
        ),
        "python -I -S <codexd release>/__main__.py --version (no sh)": wall_times(
            [*release.python_argv(), f"{library}/__main__.py", "--version"], runs
        ),
        "venv codexd --version": wall_times([*venv_cli, "--version"], runs),
        "front --version (sh, then the real codex)": wall_times(
            [str(release.front), "--version"], runs
        ),
        "real codex --version": wall_times([str(real_codex), "--version"], runs),
    }
    for subject in running.values():
        run_command(subject, "start", None)
    arguments = [f"{name}={subject.home}" for name, subject in running.items()]
    for _ in range(runs + 1):
        completed = subprocess.run(
            [*release.python_argv(), str(BENCH / "profile_steps.py"), library, *arguments],
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
