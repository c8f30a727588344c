"""Units in child processes: progress and arm numbers come back, failures name their cause,
cancelling stops the child, and a child outlives neither the driver nor a killed driver."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from judgelab.phases import ArmProgress, Stage
from judgelab.runtime.context import StepReport, UnitContext
from judgelab.runtime.errors import UnitFailed
from judgelab.runtime.progress import Unit
from judgelab.runtime.services import LocalServices
from judgelab.runtime.supervisor import Supervisor
from judgelab.runtime.unit_files import UnitFiles
from judgelab.runtime.unit_process import child_runner
from judgelab.spec import load_experiment

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart.yaml"
TABLE = "unit_child_support:TABLE"


class FakeServices:
    """Only the annotator runs, at a made-up address."""

    def child(self, service: str) -> object | None:
        return object() if service == "annotator" else None

    def address(self, service: str) -> str:
        return "127.0.0.1:4321"


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[Supervisor]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}
    with Supervisor(tmp_path / "logs", grace_s=2.0, env=env) as sup:
        yield sup


def _context(tmp_path: Path, supervisor: Supervisor) -> UnitContext:
    return UnitContext(
        load_experiment(QUICKSTART),
        QUICKSTART,
        tmp_path,
        "redis://127.0.0.1:1/0",
        cast(LocalServices, FakeServices()),
        supervisor,
    )


def _unit(name: str, attempt: int = 1) -> Unit:
    return Unit(Stage.TRAIN_JUDGES, name, attempt, 1, 1)


def _messages(context: UnitContext) -> list[Any]:
    found = []
    while not context.messages.empty():
        found.append(context.messages.get_nowait())
    return found


def test_progress_arm_and_addresses_come_back(tmp_path: Path, supervisor: Supervisor) -> None:
    context = _context(tmp_path, supervisor)
    child_runner(TABLE)(context, _unit("report", attempt=2))
    messages = _messages(context)
    assert StepReport(2, 2, "items") in messages
    assert ArmProgress("report", "plain", step=4, proxy_reward=6.5) in messages
    seen = (tmp_path / "train-judges" / "report" / "seen.txt").read_text()
    assert seen == "127.0.0.1:4321 attempt 2"
    assert not supervisor.running("unit-train-judges-report")


def test_a_failure_names_the_error_and_log(tmp_path: Path, supervisor: Supervisor) -> None:
    with pytest.raises(UnitFailed) as caught:
        child_runner(TABLE)(_context(tmp_path, supervisor), _unit("fail"))
    message = str(caught.value)
    assert message.startswith("ValueError: rows 3 and 7 have no prompt (log: ")
    assert "second line" not in message
    assert "Traceback" in caught.value.log_tail  # the whole story stays in the log
    assert (tmp_path / "logs" / "unit-train-judges-fail.log").is_file()


def test_a_rerun_ignores_the_last_attempt(tmp_path: Path, supervisor: Supervisor) -> None:
    context = _context(tmp_path, supervisor)
    files = UnitFiles(context.unit_dir(_unit("report")))
    files.fail("ValueError: from an earlier attempt")
    files.write(StepReport(9, 9, "stale"))
    child_runner(TABLE)(context, _unit("report"))
    assert StepReport(9, 9, "stale") not in _messages(context)


def test_cancelling_stops_the_child(tmp_path: Path, supervisor: Supervisor) -> None:
    context = _context(tmp_path, supervisor)
    started = tmp_path / "train-judges" / "hang" / "started"
    errors: list[BaseException] = []

    def run() -> None:
        try:
            child_runner(TABLE)(context, _unit("hang"))
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    _wait(started.is_file, 60.0)
    pid = supervisor.get("unit-train-judges-hang")
    assert pid is not None
    context.cancelled.set()
    thread.join(30.0)
    assert not thread.is_alive()
    assert "cancelled" in str(errors[0])
    assert pid.process.poll() is not None


DRIVER = """
import sys, time
from judgelab.runtime.processes import spawn
argv = [sys.executable, "-m", "judgelab.runtime.unit_main", sys.argv[1], "--run-dir", sys.argv[2],
        "--stage", "train-judges", "--unit", "hang", "--redis-url", "redis://127.0.0.1:1/0",
        "--runners", "unit_child_support:TABLE"]
with open(sys.argv[3], "wb") as log:
    child = spawn(argv, log, __import__("os").environ)
print(child.pid, flush=True)
time.sleep(600)
"""


def test_a_child_ends_when_its_driver_is_killed(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}
    log = tmp_path / "child.log"
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(QUICKSTART), str(tmp_path), str(log)],
        stdout=subprocess.PIPE, env=env, text=True,
    )  # fmt: skip
    assert driver.stdout is not None
    child = int(driver.stdout.readline())
    _wait((tmp_path / "train-judges" / "hang" / "started").is_file, 60.0)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    _wait(lambda: not _alive(child), 15.0)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait(condition: Any, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s")
        time.sleep(0.1)
