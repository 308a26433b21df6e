"""A storm of lifecycle commands from concurrent clients: every answer is one JSON
object or one clear error, no command waits past the lock timeout, and the home is
consistent when the storm is over."""

from __future__ import annotations

import json
import queue
import random
import threading
import time
from dataclasses import dataclass

from supervisor import config
from tests.conftest import Home
from tests.reliability.invariants import check_home

CLIENTS = 8
BOUNDED_OPERATIONS = 60
FULL_OPERATIONS = 200
# Weighted: mostly the commands clients send, the heavy ones less often.
OPERATIONS = (
    ["start"] * 4
    + ["version"] * 3
    + ["stop"] * 2
    + ["restart"] * 2
    + ["enable-remote-control", "disable-remote-control", "bootstrap"]
)
QUIET_SCHEDULE = {
    "CODEXD_UPDATE_INITIAL_DELAY_SECONDS": "3600",
    "CODEXD_UPDATE_INTERVAL_SECONDS": "3600",
}


@dataclass(frozen=True)
class Answer:
    command: str
    returncode: int
    stdout: str
    stderr: str
    seconds: float


def problem_with(answer: Answer) -> str | None:
    """Why `answer` breaks the output contract, None when it keeps it."""
    if answer.returncode == 0:
        lines = answer.stdout.splitlines()
        if len(lines) != 1:
            return f"{len(lines)} lines on stdout"
        try:
            value = json.loads(lines[0])
        except ValueError:
            return "stdout is not JSON"
        return None if isinstance(value, dict) else "stdout is not a JSON object"
    if answer.stdout:
        return "failed but wrote to stdout"
    if not answer.stderr.startswith("codexd: "):
        return "failed without a codexd: message"
    if len(answer.stderr.splitlines()) != 1:
        return "failed with more than one line on stderr"
    return None


def test_storm_of_concurrent_commands_keeps_the_contract(
    home: Home, rng: random.Random, full: bool
) -> None:
    home.env.update(QUIET_SCHEDULE)
    count = FULL_OPERATIONS if full else BOUNDED_OPERATIONS
    work: queue.Queue[str] = queue.Queue()
    for _ in range(count):
        work.put(rng.choice(OPERATIONS))
    answers: list[Answer] = []
    lock = threading.Lock()

    def client() -> None:
        while True:
            try:
                command = work.get_nowait()
            except queue.Empty:
                return
            began = time.monotonic()
            result = home.run(command)
            answer = Answer(
                command,
                result.returncode,
                result.stdout,
                result.stderr,
                time.monotonic() - began,
            )
            with lock:
                answers.append(answer)

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(answers) == count
    broken = [(answer, problem_with(answer)) for answer in answers if problem_with(answer)]
    assert broken == [], broken
    slowest = max(answers, key=lambda answer: answer.seconds)
    assert slowest.seconds < config.LOCK_TIMEOUT_SECONDS, slowest
    # Failures are only the ones a client can expect: `version` with nothing running,
    # or with a keeper still starting its app-server.
    expected = ("codexd: app server is not running", "codexd: app server is not answering yet")
    failed = [answer for answer in answers if answer.returncode != 0]
    unexpected = [
        answer
        for answer in failed
        if not (answer.command == "version" and answer.stderr.startswith(expected))
    ]
    assert unexpected == [], unexpected
    print(
        f"storm: {count} operations from {CLIENTS} clients, {len(failed)} expected failures, "
        f"slowest {slowest.command} {slowest.seconds:.2f} s"
    )

    check_home(home.path)
    assert home.ok("start")["status"] in ("started", "alreadyRunning")
    state = check_home(home.path)
    assert state.app_server is not None
