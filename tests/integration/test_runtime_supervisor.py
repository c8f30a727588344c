"""The local runtime's processes: services announce their ports and pass gRPC health before use,
a crash or a failed start is reported with the service's log tail, and SIGINT / SIGTERM to the
runtime leave no process behind (children of children included).

The services run an experiment whose models are behind an OpenAI-compatible URL that is never
called, so they start in seconds without loading a model. Run as a script, this file is the
runtime under test: `python test_runtime_supervisor.py EXPERIMENT RUN_DIR`.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from judgelab.phases import Stage
from judgelab.phases.stages import ANNOTATOR, JUDGE_POOL
from judgelab.runtime import RunStore, ServiceFailed, Supervisor, Unit, UnitContext, run_cli
from judgelab.runtime.processes import process_tree
from judgelab.runtime.readiness import wait_serving
from judgelab.runtime.redis_local import ping, start_local_redis
from judgelab.runtime.services import LocalServices, service_argv

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart.yaml"
OFFLINE_MODEL = {
    "engine": "openai",
    "name": "offline",
    "base_url": "http://127.0.0.1:9/v1",
    "context_length": 4096,
}
# A helper whose child leaves the process group (new session): only the descendant snapshot
# finds it. And one whose child ignores SIGTERM: only SIGKILL after the grace ends it.
ESCAPEE = (
    "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', "
    "'import time; time.sleep(600)'], start_new_session=True); time.sleep(600)"
)
STUBBORN = (
    "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', "
    "'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "time.sleep(600)']); time.sleep(600)"
)


def offline_experiment(directory: Path) -> Path:
    """quickstart.yaml with every model behind an unreachable OpenAI-compatible URL."""
    raw = yaml.safe_load(QUICKSTART.read_text())
    spec = raw["spec"]
    for holder in (spec["gold"], spec["policy"], *spec["judges"]):
        holder["model"] = dict(OFFLINE_MODEL)
    path = directory / "offline.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def alive(pids: list[int]) -> list[int]:
    """Pids that still run (zombies count as gone): psutil where installed, else /proc."""
    try:
        import psutil
    except ImportError:

        def running(pid: int) -> bool:
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                return False
            return stat[stat.rindex(")") + 2] != "Z"

        return [p for p in pids if running(p)]
    found = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                found.append(pid)
        except psutil.NoSuchProcess:
            pass
    return found


@pytest.fixture(scope="module")
def experiment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return offline_experiment(tmp_path_factory.mktemp("experiment"))


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[Supervisor]:
    with Supervisor(tmp_path / "logs", grace_s=5.0, start_timeout_s=120.0) as sup:
        yield sup


@pytest.mark.slow
def test_services_announce_pass_health_and_a_crash_is_reported_with_its_log(
    experiment: Path, supervisor: Supervisor, tmp_path: Path
) -> None:
    url = start_local_redis(supervisor, tmp_path / "redis")
    assert ping(url, 5.0)
    assert (tmp_path / "redis" / "appendonlydir").is_dir()  # AOF on, data under RUN/redis
    events: list[str] = []
    services = LocalServices(supervisor, experiment, url, on_event=events.append)
    assert services.ensure([ANNOTATOR, JUDGE_POOL]) == [ANNOTATOR, JUDGE_POOL]
    pool = services.child(JUDGE_POOL)
    assert pool is not None and pool.announced["service"] == "judge-pool"
    assert pool.address.startswith("127.0.0.1:")
    assert wait_serving(pool.process, pool.address, 5.0) is None
    assert (tmp_path / "logs" / "gold-annotator.log").exists()

    os.kill(pool.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while not (lost := services.crashed()):
        assert time.monotonic() < deadline, "crash not noticed"
        time.sleep(0.05)
    assert lost == [JUDGE_POOL]
    report = events[-1]
    assert report.startswith("judge-pool exited with code -9 (log: ")
    assert "log tail:" in report and "gRPC serving judgelab.v1.JudgePool" in report
    assert services.ensure([ANNOTATOR, JUDGE_POOL]) == [JUDGE_POOL]  # restarted, once
    assert services.restarts == {JUDGE_POOL: 1}
    restarted = services.child(JUDGE_POOL)
    assert restarted is not None and restarted.pid != pool.pid
    assert wait_serving(restarted.process, restarted.address, 5.0) is None


def test_services_started_together_are_all_stopped_when_one_fails_to_start(
    supervisor: Supervisor,
) -> None:
    failing = [sys.executable, "-c", "import sys; print('boom', flush=True); sys.exit(3)"]
    sleeper = [sys.executable, "-c", "import time; time.sleep(600)"]
    started = time.monotonic()
    with pytest.raises(ServiceFailed) as failed:
        supervisor.start_many([("failing", failing), ("sleeper", sleeper)])
    assert "boom" in str(failed.value)
    assert time.monotonic() - started < 30  # the sleeper was not waited for
    assert not supervisor.running("sleeper") and supervisor.get("sleeper") is None


@pytest.mark.slow
def test_a_service_that_cannot_start_is_reported_with_its_log(
    supervisor: Supervisor, tmp_path: Path
) -> None:
    missing = tmp_path / "missing.yaml"
    with pytest.raises(ServiceFailed) as failed:
        supervisor.start("judge-pool", service_argv(JUDGE_POOL, missing, "redis://x:1/0"))
    text = str(failed.value)
    assert "judge-pool exited with code 1 before announcing its ports" in text
    assert "missing.yaml" in failed.value.log_tail  # what `judgelab serve` said

    quiet = [sys.executable, "-c", "import time; print('booting', flush=True); time.sleep(60)"]
    slow = Supervisor(tmp_path / "logs", grace_s=2.0, start_timeout_s=1.0)
    with slow, pytest.raises(ServiceFailed) as timed_out:
        slow.start("quiet", quiet)
    assert "quiet did not announce its ports within 1 s" in str(timed_out.value)
    assert timed_out.value.log_tail.endswith("booting")
    assert slow.get("quiet") is None


def _start_runtime(experiment: Path, run_dir: Path) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    process = subprocess.Popen(
        [sys.executable, __file__, str(experiment), str(run_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "REDIS_URL"},
    )
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], 240)
    line = process.stdout.readline() if ready else ""
    if not line:
        process.kill()
        _, err = process.communicate()
        pytest.fail(f"runtime did not report its processes: {err[-3000:]}")
    return process, json.loads(line)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_to_the_runtime_leaves_no_orphans(
    experiment: Path, tmp_path: Path, signum: signal.Signals
) -> None:
    process, report = _start_runtime(experiment, tmp_path / "run")
    pids = report["pids"]
    try:
        assert set(report["services"]) == {
            "redis",
            "gold-annotator",
            "judge-pool",
            "escapee",
            "stubborn",
        }
        assert len(pids) >= 7  # 5 children and 2 grandchildren (escaped, stubborn)
        assert alive(pids) == pids
        process.send_signal(signum)
        _, err = process.communicate(timeout=120)
        assert process.returncode == 128 + signum, err
        assert f"stopped by signal {int(signum)}; resume with: judgelab run --resume" in err
        assert "Traceback" not in err
        assert alive(pids) == []
    finally:
        for pid in alive(pids):
            os.kill(pid, signal.SIGKILL)
    state = RunStore(tmp_path / "run").load()
    assert state.unit(Stage.ANNOTATE, "gold").status == "pending"
    assert not any(state.services.values())
    events = [e["event"] for e in RunStore(tmp_path / "run").phase_log()]
    assert events[-1] == "UnitInterrupted" or "UnitInterrupted" in events
    for name in ("redis", "gold-annotator", "judge-pool"):
        assert (tmp_path / "run" / "logs" / f"{name}.log").stat().st_size > 0


@pytest.mark.slow
def test_services_die_with_a_killed_runtime(experiment: Path, tmp_path: Path) -> None:
    """kill -9 leaves no time to clean up: the services the main thread started get SIGTERM
    from the kernel (parent-death signal) and exit."""
    process, report = _start_runtime(experiment, tmp_path / "run")
    services = [report["services"][n] for n in ("redis", "gold-annotator")]
    others = [p for p in report["pids"] if p not in services]
    try:
        process.kill()
        process.wait(timeout=30)
        deadline = time.monotonic() + 60
        while alive(services) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert alive(services) == []
    finally:
        for pid in alive(report["pids"]):
            os.kill(pid, signal.SIGKILL)
    assert others  # started from the runner's thread: cleaned up above, not by the kernel


def _hold(context: UnitContext, unit: Unit) -> None:
    """Annotate's runner in script mode: more processes, report them all, wait to be stopped."""
    context.services.ensure([JUDGE_POOL])
    context.supervisor.start("escapee", [sys.executable, "-c", ESCAPEE], announce=False)
    context.supervisor.start("stubborn", [sys.executable, "-c", STUBBORN], announce=False)
    time.sleep(1.5)  # the helpers start their own children
    names = ("redis", "gold-annotator", "judge-pool", "escapee", "stubborn")
    children = {n: c.pid for n in names if (c := context.supervisor.get(n)) is not None}
    pids = [pid for pid, _ in process_tree(os.getpid()) if pid != os.getpid()]
    print(json.dumps({"pids": pids, "services": children}), flush=True)
    context.cancelled.wait()


def _main() -> int:
    experiment, run_dir = Path(sys.argv[1]), Path(sys.argv[2])
    runners = {stage: _hold for stage in Stage}
    return run_cli(experiment, run_dir, runners, grace_s=3.0)


if __name__ == "__main__":
    sys.exit(_main())
