"""`codexd doctor`'s `codex.login`: what `codex login status` answers (the outputs
below are codex 0.169.0's own), the verdict for each answer with remote control on and
off, and asking a codex binary in a home."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.doctor_checks import CheckStatus
from supervisor.doctor_facts import FrontParts
from supervisor.doctor_login import (
    LoginFacts,
    SignIn,
    check_login,
    gather_login,
    login_command,
    sign_in_of,
)
from supervisor.paths import HomePaths
from tests.test_doctor_checks import judged

OK, WARNING = CheckStatus.OK, CheckStatus.WARNING
CODEX = Path("/h/packages/codex/0.169.0-aaaaaaaaaaaa/bin/codex")
# codex's warning under a home in /tmp, printed before its answer.
ALIASES = (
    "WARNING: proceeding, even though we could not create PATH aliases: Refusing to "
    'create helper binaries under temporary dir "/tmp" (codex_home: AbsolutePathBuf("/tmp/h"))\n'
)
SIGNED_OUT = f"{ALIASES}Not logged in\n"
CHATGPT = "Logged in using ChatGPT\n"
API_KEY = (
    f"{ALIASES}API key configured - sk-test-***67890\n"
    "Authentication is checked when you send a request.\n"
)
KEYRING = (
    "Error checking login status: failed to load CLI auth from keyring: Platform secure "
    "storage failure: no secret service provider or dbus session found\n"
)
BROKEN = "Error checking login status: failed to deserialize CLI auth from file: key must be a string at line 1 column 2\n"  # noqa: E501


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        (LoginFacts(CODEX, 1, SIGNED_OUT), SignIn.SIGNED_OUT),
        (LoginFacts(CODEX, 0, CHATGPT), SignIn.CHATGPT),
        (LoginFacts(CODEX, 0, API_KEY), SignIn.API_KEY),
        (LoginFacts(CODEX, 0, "Logged in using personal access token\n"), SignIn.OTHER),
        (LoginFacts(CODEX, 1, KEYRING), SignIn.UNKNOWN),
        (LoginFacts(CODEX, 1, BROKEN), SignIn.UNKNOWN),
        (LoginFacts(CODEX, 1, ""), SignIn.UNKNOWN),
        (LoginFacts(CODEX, None, "codex login status: timed out"), SignIn.UNKNOWN),
        (LoginFacts(CODEX, 0, ""), SignIn.OTHER),
        (LoginFacts(None, why_not_asked="remote control is off"), SignIn.NOT_ASKED),
    ],
)
def test_what_codex_login_status_answered(facts: LoginFacts, expected: SignIn) -> None:
    assert sign_in_of(facts) is expected


def test_the_answer_is_the_first_line_that_is_not_a_codex_warning() -> None:
    assert LoginFacts(CODEX, 0, API_KEY).says == "API key configured - sk-test-***67890"
    assert LoginFacts(CODEX, 1, SIGNED_OUT).says == "Not logged in"


LOGIN = "/h/packages/standalone/current/codex login"


@pytest.mark.parametrize(
    ("facts", "remote_control", "expected", "words"),
    [
        (
            LoginFacts(CODEX, 1, SIGNED_OUT),
            True,
            WARNING,
            ["codex is not signed in", "remote control is on", f"`{LOGIN}`", "--device-auth"],
        ),
        (LoginFacts(CODEX, 0, CHATGPT), True, OK, ["signed in: Logged in using ChatGPT"]),
        (
            LoginFacts(CODEX, 0, API_KEY),
            True,
            WARNING,
            ["API key configured - sk-test-***67890", "needs codex signed in with ChatGPT", LOGIN],
        ),
        (
            LoginFacts(CODEX, 0, "Logged in using personal access token\n"),
            True,
            OK,
            ["personal access token"],
        ),
        (
            LoginFacts(CODEX, 1, KEYRING),
            True,
            WARNING,
            ["cannot tell whether codex is signed in", "secret service", LOGIN],
        ),
        (
            LoginFacts(CODEX, None, f"{CODEX} login status: timed out"),
            True,
            WARNING,
            ["cannot tell", "timed out"],
        ),
        (
            LoginFacts(None, why_not_asked="the reference app-server needs no sign-in"),
            True,
            OK,
            ["not checked: the reference app-server needs no sign-in"],
        ),
        (
            LoginFacts(None, why_not_asked="remote control is off, and nothing else needs it"),
            False,
            OK,
            ["not checked: remote control is off"],
        ),
    ],
)
def test_the_login_check(
    facts: LoginFacts, remote_control: bool, expected: CheckStatus, words: list[str]
) -> None:
    verdict = check_login(facts, remote_control, LOGIN)
    judged(verdict, expected, *words)
    assert verdict.details["signIn"] == sign_in_of(facts).value


@pytest.mark.parametrize(
    ("home", "expected"),
    [
        ("/home/me/.codex", "/home/me/.codex/packages/standalone/current/codex login"),
        (
            "/srv/codex",
            "CODEX_HOME=/srv/codex /srv/codex/packages/standalone/current/codex login",
        ),
        (
            "/srv/my codex",
            "CODEX_HOME='/srv/my codex' '/srv/my codex/packages/standalone/current/codex' login",
        ),
    ],
)
def test_the_login_command_names_the_home_unless_it_is_the_default(
    home: str, expected: str
) -> None:
    assert login_command(HomePaths(Path(home)), Path("/home/me/.codex")) == expected


FRONT = FrontParts("/usr/bin/python3", "codexd/0.1.0-bbbbbbbbbbbb", "codex/1-a/bin/codex")


def fake_login_codex(home: Path) -> Path:
    """A codex whose `login status` answers as 0.169.0 does, from the home it is given."""
    codex = home / "packages" / "codex" / "1-a" / "bin" / "codex"
    codex.parent.mkdir(parents=True)
    codex.write_text(
        "#!/bin/sh\n"
        '[ "$*" = "login status" ] || exit 9\n'
        'echo "WARNING: a warning of its own" >&2\n'
        'if [ -f "$CODEX_HOME/auth.json" ]; then echo "Logged in using ChatGPT" >&2; exit 0; fi\n'
        'echo "Not logged in" >&2; exit 1\n'
    )
    codex.chmod(0o755)
    return codex


def test_codex_is_asked_in_this_home_only_when_remote_control_is_on(tmp_path: Path) -> None:
    home = tmp_path / "home"
    codex = fake_login_codex(home)
    paths = HomePaths(home)

    assert gather_login(paths, FRONT, remote_control=False).codex is None
    assert gather_login(paths, FrontParts("/usr/bin/python3", "codexd/x", None), True).codex is None
    assert gather_login(paths, None, True).codex is None

    facts = gather_login(paths, FRONT, remote_control=True)
    assert (facts.codex, facts.exit_status, facts.says) == (codex, 1, "Not logged in")
    (home / "auth.json").write_text("{}")
    facts = gather_login(paths, FRONT, remote_control=True)
    assert (facts.exit_status, sign_in_of(facts)) == (0, SignIn.CHATGPT)


def test_a_codex_that_cannot_be_run_is_no_answer(tmp_path: Path) -> None:
    fake_login_codex(tmp_path).chmod(0o644)
    facts = gather_login(HomePaths(tmp_path), FRONT, remote_control=True)
    assert facts.exit_status is None and "login status" in facts.says
    assert sign_in_of(facts) is SignIn.UNKNOWN


def test_a_missing_codex_binary_is_not_asked_and_left_to_install_managed(
    tmp_path: Path,
) -> None:
    facts = gather_login(HomePaths(tmp_path), FRONT, remote_control=True)
    assert sign_in_of(facts) is SignIn.NOT_ASKED
    verdict = check_login(facts, True, LOGIN)
    assert verdict.status is CheckStatus.OK and verdict.remediation is None
    assert verdict.summary == "not checked: the codex binary is missing (see install.managed)"
