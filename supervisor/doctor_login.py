"""`codexd doctor`'s `codex.login`: whether codex is signed in, which remote control
needs (with ChatGPT: codex refuses an API key for it).

codex is asked itself, and only when remote control is on: `<codex> login status` in
this home. It reads config.toml and auth.json (or the keyring config.toml names) and
uses no network: it answers in 10 to 40 ms, the same with no network at all (`unshare
-n`). Its one write is what every codex start does: it replaces its helper links under
<home>/tmp/arg0-linux/. Its answer is read by `sign_in_of`, judged by `check_login`;
both pure.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from supervisor.doctor_checks import Verdict, ok, warning
from supervisor.doctor_facts import FrontParts
from supervisor.paths import HomePaths
from supervisor.standalone import layout_of

LOGIN_STATUS_TIMEOUT_SECONDS = 5.0
MISSING_CODEX = "the codex binary is missing (see install.managed)"


class SignIn(Enum):
    CHATGPT = "chatgpt"  # what remote control needs
    API_KEY = "apiKey"  # signed in, but remote control refuses an API key
    OTHER = "other"  # signed in some other way
    SIGNED_OUT = "signedOut"
    UNKNOWN = "unknown"  # codex could not tell (its message says why), or could not be asked
    NOT_ASKED = "notAsked"  # no codex to ask: the reference app-server, not install.sh's, gone


@dataclass(frozen=True)
class LoginFacts:
    codex: Path | None  # the codex binary asked; None: none was
    exit_status: int | None = None  # None: it could not be run
    output: str = ""  # what it printed, or why it could not be run
    why_not_asked: str | None = None

    @property
    def says(self) -> str:
        """Its answer: the first line that is not one of codex's own warnings."""
        lines = (line.strip() for line in self.output.splitlines())
        return next((line for line in lines if line and not line.startswith("WARNING:")), "")


def sign_in_of(facts: LoginFacts) -> SignIn:
    """What `codex login status` answered: it exits 0 when signed in, saying how
    ("Logged in using ChatGPT", "API key configured - sk-...", ...), and 1 with
    "Not logged in", or with "Error checking login status: ..."."""
    if facts.codex is None:
        return SignIn.NOT_ASKED
    says = facts.says
    if facts.exit_status == 0:
        if "ChatGPT" in says:
            return SignIn.CHATGPT
        return SignIn.API_KEY if says.startswith("API key") else SignIn.OTHER
    if facts.exit_status is not None and says == "Not logged in":
        return SignIn.SIGNED_OUT
    return SignIn.UNKNOWN


def login_command(paths: HomePaths, default_home: Path) -> str:
    """`codex login` as the user runs it: through the managed binary, in this home."""
    home = "" if paths.home == default_home else f"CODEX_HOME={shlex.quote(str(paths.home))} "
    return f"{home}{shlex.quote(str(paths.managed_binary))} login"


def check_login(facts: LoginFacts, remote_control: bool, login: str) -> Verdict:
    """Remote control on and codex not signed in with ChatGPT warns, with `codex login`."""
    sign_in, says = sign_in_of(facts), facts.says
    details = {
        "codex": None if facts.codex is None else str(facts.codex),
        "signIn": sign_in.value,
        "loginStatus": says or None,
        "remoteControlEnabled": remote_control,
    }
    if sign_in is SignIn.NOT_ASKED:
        return ok(f"not checked: {facts.why_not_asked}", details)
    needs = "remote control is on and needs codex signed in with ChatGPT"
    # Over SSH there is no browser on the host: --device-auth signs in from any other.
    remedy = f"`{login}` (over SSH, add `--device-auth`)"
    if sign_in is SignIn.SIGNED_OUT:
        return warning(f"codex is not signed in, but {needs}", remedy, details)
    if sign_in is SignIn.API_KEY:
        return warning(f"codex uses an API key ({says}), but {needs}", remedy, details)
    if sign_in is SignIn.UNKNOWN:
        return warning(
            f"cannot tell whether codex is signed in ({needs}): {says or 'no answer'}",
            remedy,
            details,
        )
    return ok(f"codex is signed in: {says}", details)


def gather_login(paths: HomePaths, front: FrontParts | None, remote_control: bool) -> LoginFacts:
    """Ask the codex binary the front runs, when remote control needs it signed in."""
    if not remote_control:
        return LoginFacts(None, why_not_asked="remote control is off, and nothing else needs it")
    if front is None:
        return LoginFacts(
            None, why_not_asked="the managed binary is not a release install.sh wrote"
        )
    if front.codex is None:
        return LoginFacts(None, why_not_asked="the reference app-server needs no sign-in")
    codex = layout_of(paths).packages / front.codex
    if not os.path.lexists(codex):
        # install.managed reports it, with the remedy; asking would only repeat it.
        return LoginFacts(None, why_not_asked=MISSING_CODEX)
    try:
        completed = subprocess.run(
            [str(codex), "login", "status"],
            env={**os.environ, "CODEX_HOME": str(paths.home)},
            capture_output=True,
            text=True,
            timeout=LOGIN_STATUS_TIMEOUT_SECONDS,
            stdin=subprocess.DEVNULL,
            cwd="/",
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as error:
        return LoginFacts(codex, None, f"{codex} login status: {error}")
    # codex 0.169.0 prints its answer on stderr, after any warnings of its own.
    return LoginFacts(codex, completed.returncode, completed.stdout + completed.stderr)
