"""install.sh's second half: everything that writes under CODEX_HOME/packages, under
the install lock.

install.sh has chosen the interpreter, found codexd's source, and fetched and verified
the release artifact; it then runs this module from inside that artifact with that
interpreter (the one the release will run with):

    <python> -I -S -c '<import from the artifact>' <artifact> --home H --release R
        --sha256 S --source 'channel <dir|url>' [--force]

It plans the release from the newest codex of the codex source and this codexd release
without writing anything, and builds it only when that release is not current yet (nor
rejected here): the stores get what they lack, the release dir is staged, run, renamed
into place, `previous` is written and `current` switched. On any failure, or SIGTERM,
what this run made is removed and the install is as it was. Standard library only.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from supervisor.codex_npm import Npm
from supervisor.codex_source import CodexSource, SourceError, SourceKind, parse_source
from supervisor.config import CODEX_SOURCE_ENV
from supervisor.front import (
    CodexdPart,
    Release,
    release_name,
    render_codexd_launcher,
    render_front,
)
from supervisor.installer import UNDER_UPDATE_ENV
from supervisor.release_dir import (
    InstallError,
    check_interpreter,
    codexd_part,
    install_bin_command,
    stage_release,
    write_record,
)
from supervisor.release_parts import front_parts, missing_parts
from supervisor.standalone import (
    RELEASE_MARKER,
    Layout,
    codexd_current_release,
    read_line,
    read_marker,
    read_rejected,
    releases_in_use,
    releases_to_keep,
)
from supervisor.stores import (
    PlannedCodex,
    StoreError,
    codexd_installed,
    install_codex,
    install_codexd,
    pid_alive,
    plan_codex,
    prune,
    remove,
    sweep_leftovers,
)

LOCK_WAIT_SECONDS = 900.0
LOCK_POLL_SECONDS = 0.1
DEFAULT_NPM_SOURCE = "npm:latest"


class Interrupted(BaseException):
    """SIGTERM, SIGHUP or SIGINT: unwind, removing what this run made."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def say(message: str) -> None:
    print(f"install.sh: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Options:
    home: Path
    artifact: Path
    release: str  # the codexd release: `<version>-<12 hex>`
    sha256: str
    source: str  # codexd's source as `source` records it
    scratch: Path  # install.sh's temp dir: npm runs there
    force: bool


def parse_options(argv: Sequence[str]) -> Options:
    parser = argparse.ArgumentParser(prog="install.sh (installer)")
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--release", required=True)
    parser.add_argument("--sha256", required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--scratch", type=Path, required=True)
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)
    return Options(
        home=args.home.absolute(),
        artifact=args.artifact,
        release=args.release,
        sha256=args.sha256,
        source=args.source,
        scratch=args.scratch,
        force=args.force,
    )


@contextlib.contextmanager
def install_lock(layout: Layout) -> Iterator[None]:
    """The lock every install into this home holds for its whole run, the updater's
    included, so that two never stage, rename or prune at once."""
    layout.standalone.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(
            layout.install_lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644
        )
    except OSError as error:
        raise InstallError(
            f"cannot open the install lock {layout.install_lock}: {error.strerror}"
        ) from error
    try:
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        waiting = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not waiting:
                    say(f"waiting for another install ({layout.install_lock} is held)")
                    waiting = True
                if time.monotonic() >= deadline:
                    raise InstallError(
                        f"another install held {layout.install_lock} for {LOCK_WAIT_SECONDS:g} s"
                    ) from None
                time.sleep(LOCK_POLL_SECONDS)
        yield
    finally:
        os.close(fd)


def configured_source(layout: Layout, environ: dict[str, str]) -> CodexSource | None:
    """The codex source the environment names, else the one the last install recorded,
    parsed; None when neither names one. A typo fails here, before anything is fetched
    or built."""
    text = environ.get(CODEX_SOURCE_ENV) or read_line(layout.record("codex-source"))
    if not text:
        return None
    try:
        return parse_source(text)
    except SourceError as error:
        where = CODEX_SOURCE_ENV if environ.get(CODEX_SOURCE_ENV) else layout.record("codex-source")
        raise InstallError(f"{where}: {error}") from error


def choose_codex_source(
    configured: CodexSource | None, npm: Npm | None
) -> tuple[CodexSource, bool]:
    """The codex source and whether to record it: the configured one, else npm:latest
    when npm is there, else the reference app-server, unrecorded, so that a later
    install with npm on PATH moves to the real codex."""
    if configured is not None:
        return configured, True
    if npm is not None:
        return parse_source(DEFAULT_NPM_SOURCE), True
    say(
        "npm is not on PATH, so this installs codexd's reference app-server in place of the "
        "real codex. For the real codex, install Node.js and npm and run install.sh again "
        "(or let the updater do it), or give a binary: "
        "CODEXD_CODEX_SOURCE=path:/path/to/codex sh install.sh"
    )
    return CodexSource(SourceKind.REFERENCE), False


@dataclass(frozen=True)
class Plan:
    """The release the sources offer now, worked out without writing anything."""

    release: Release
    front: str
    name: str
    codex: PlannedCodex | None
    source: CodexSource
    records: dict[str, str]  # standalone/'s one-line records once it is installed

    def describe(self) -> str:
        codex = self.release.codex
        what = "codexd's reference app-server" if codex is None else f"codex {codex.version}"
        return f"{what} from {self.source}, codexd {self.release.codexd.store}"


def plan_release(
    options: Options, layout: Layout, environ: dict[str, str], codexd: CodexdPart, python: str
) -> Plan:
    npm = Npm.find(options.scratch)
    source, record_source = choose_codex_source(configured_source(layout, environ), npm)
    codex = plan_codex(layout, source, npm)
    release = Release(python, layout.packages, codexd, None if codex is None else codex.part)
    front = render_front(release)
    records = {"source": options.source, "python": python}
    if record_source:
        records["codex-source"] = str(source)
    return Plan(release, front, release_name(release, front), codex, source, records)


def build_release(plan: Plan, layout: Layout, options: Options, current: str | None) -> None:
    """Fill the stores with what they lack, then stage and switch to the release. What
    this run adds (store entries, and the store directories when it made them) goes
    again should anything fail."""
    codexd = plan.release.codexd
    made = [path for path in (layout.codex_store, layout.codexd_store) if not path.exists()]
    try:
        if not codexd_installed(layout, codexd):
            say(f"unpacking codexd {codexd.store} into {layout.codexd_store}")
            made.append(install_codexd(layout, codexd, options.artifact, plan.release.python))
        if plan.codex is not None and plan.codex.fetch is not None:
            version = plan.codex.part.version
            if plan.codex.missing is None:
                say(f"fetching codex {version} from {plan.source} into {layout.codex_store}")
                made.append(install_codex(layout, plan.codex))
            else:
                # A damaged entry a release names: its replacement is kept whatever
                # happens next, being no worse than what was there.
                say(
                    f"codex {version} in {layout.codex_store} is incomplete (missing "
                    f"{plan.codex.missing}): fetching it again from {plan.source}"
                )
                install_codex(layout, plan.codex)
        launcher = render_codexd_launcher(plan.release)
        stage_release(layout, plan.name, plan.front, launcher, plan.release, current, options.force)
    except BaseException:
        for path in reversed(made):
            remove(path)
        raise


def install(options: Options, environ: dict[str, str]) -> None:
    layout = Layout(options.home)
    configured_source(layout, environ)  # a typo in the source fails before anything else
    python = os.path.realpath(sys.executable)
    check_interpreter(options.artifact, options.release, python)
    codexd = codexd_part(options.artifact, options.release, options.sha256)
    refuse_foreign(layout, options.force)  # first without the lock: no lock file made
    with install_lock(layout):
        sweep_leftovers(
            [layout.standalone, layout.releases, layout.codex_store, layout.codexd_store]
        )
        refuse_foreign(layout, options.force)
        current = codexd_current_release(layout)
        plan = plan_release(options, layout, environ, codexd, python)
        missing = release_missing(layout, plan.name, plan.front)
        if plan.name == current and not missing:
            outcome = f"release {plan.name} is already installed"
        elif plan.name in read_rejected(layout):
            listed = layout.record("rejected")
            say(
                f"release {plan.name} was rolled back on this machine (listed in {listed}); skipped"
            )
            return
        else:
            build_release(plan, layout, options, current)
            verb = "repaired" if plan.name == current else "installed"
            outcome = f"{verb} release {plan.name} ({plan.describe()})"
            if plan.name == current:
                outcome += f"; it was missing {', '.join(missing)}"
        for record, value in plan.records.items():
            write_record(layout, record, value)
        finish(layout, options.home)
        say(outcome)
        running = app_server_release(options.home)
        under_update = bool(environ.get(UNDER_UPDATE_ENV))  # which restarts it next
        if not under_update and running not in (None, codexd_current_release(layout)):
            say(
                f"the running app-server stays on release {running} until `codexd update` "
                "or `codexd restart`, or the updater's next pass"
            )


def refuse_foreign(layout: Layout, force: bool) -> None:
    foreign = codexd_current_release(layout) is None and (
        layout.current.exists() or layout.current.is_symlink()
    )
    if foreign and not force:
        raise InstallError(
            f"{layout.current} is not a codexd release (not a symlink to a release with "
            f"{RELEASE_MARKER}); rerun with --force to replace it"
        )


def release_missing(layout: Layout, name: str, front: str) -> list[str]:
    """What releases/<name> lacks to be the planned release: its front (when it is not
    this one), a store entry's marker, or a part the front runs (doctor's
    "incomplete"); empty when it is whole."""
    directory = layout.releases / name
    try:
        same_front = (directory / "codex").read_text() == front
    except (OSError, UnicodeDecodeError):
        same_front = False
    missing = [] if same_front else [str(directory / "codex")]
    marker = read_marker(directory / RELEASE_MARKER)
    codex = marker.get("codex", "")
    stores = [layout.codexd_store / marker.get("codexd", "") / ".codexd-artifact"]
    if codex and codex != "reference":
        stores.append(layout.codex_store / codex / ".codexd-payload")
    missing += [str(path) for path in stores if not path.is_file()]
    parts = front_parts(front)
    if parts is not None:
        missing += [path for path in missing_parts(layout.packages, parts) if path not in missing]
    return missing


def app_server_release(home: Path) -> str | None:
    """The release a live app-server was launched from, by its pid record (the
    keeper's pid alive); None when none runs."""
    import json  # only this notice reads a pid record

    record = home / "app-server-daemon" / "app-server.pid"
    try:
        value = json.loads(record.read_text())
        pid, executable = int(value["pid"]), Path(str(value["executable"]))
    except (OSError, ValueError, LookupError, TypeError):
        return None
    if executable.parent.parent != Layout(home).releases or not pid_alive(pid):
        return None
    return executable.parent.name


def finish(layout: Layout, home: Path) -> None:
    """Prune to current, previous and what runs; put the codexd command on PATH."""
    previous = read_line(layout.record("previous"))
    keep = releases_to_keep(codexd_current_release(layout), previous, releases_in_use(home))
    for path in prune(layout, keep):
        say(f"removed {path}")
    install_bin_command(home, os.environ)


def handle_signals() -> None:
    def interrupted(signum: int, frame: object) -> None:
        raise Interrupted(signum)

    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, interrupted)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(sys.argv[1:] if argv is None else argv)
    handle_signals()
    os.umask(0o022)
    try:
        install(options, dict(os.environ))
    except (InstallError, StoreError, SourceError) as error:
        say(f"error: {error}")
        return 1
    except Interrupted as stop:
        say(f"interrupted by signal {stop.signum}; the install is as it was")
        return 128 + stop.signum
    return 0
