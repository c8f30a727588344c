"""``python -m judgelab.runtime.unit_main RUN/experiment.yaml --run-dir RUN --stage S --unit U``

One unit of `judgelab run` in a process of its own (started by `unit_process.run_in_child`):
the same runner as in process, with the services at the ``--address`` given. Progress and arm
numbers go to the unit directory's `UnitFiles`; a failure writes its reason there and exits 1.
The process ends itself if `judgelab run` dies without stopping it.
"""

from __future__ import annotations

import argparse
import importlib
import os
import queue
import threading
import time
import traceback
from pathlib import Path
from typing import cast

from judgelab.phases import Stage
from judgelab.runtime.context import Runners, UnitContext
from judgelab.runtime.progress import Unit
from judgelab.runtime.services import LocalServices
from judgelab.runtime.supervisor import Supervisor
from judgelab.runtime.unit_files import UnitFiles
from judgelab.runtime.unit_process import RUNNER_TABLE
from judgelab.spec import load_experiment

PARENT_POLL_S = 1.0


class GivenAddresses(LocalServices):
    """The services as the driver started them: addresses only, nothing to start or watch."""

    def __init__(self, supervisor: Supervisor, experiment_path: Path, redis_url: str,
                 addresses: dict[str, str]) -> None:  # fmt: skip
        super().__init__(supervisor, experiment_path, redis_url)
        self.addresses = addresses

    def address(self, service: str) -> str:
        if service not in self.addresses:
            raise KeyError(f"{service} is not running")
        return self.addresses[service]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="judgelab.runtime.unit_main", description=__doc__)
    parser.add_argument("experiment", type=Path, help="the run's experiment.yaml")
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--stage", required=True, choices=[stage.value for stage in Stage])
    parser.add_argument("--unit", required=True)
    parser.add_argument("--attempt", type=int, default=1)
    parser.add_argument("--index", type=int, default=1)
    parser.add_argument("--total", type=int, default=1)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--address", action="append", default=[], help="SERVICE=HOST:PORT")
    parser.add_argument(
        "--runners", default=RUNNER_TABLE, help="module:attribute of the stage -> runner table"
    )
    return parser.parse_args(argv)


def parse_addresses(pairs: list[str]) -> dict[str, str]:
    addresses: dict[str, str] = {}
    for pair in pairs:
        service, sep, address = pair.partition("=")
        if not sep or not service or not address:
            raise SystemExit(f"judgelab: --address wants SERVICE=HOST:PORT, got {pair!r}")
        addresses[service] = address
    return addresses


def runner_table(dotted: str) -> Runners:
    module, sep, attribute = dotted.partition(":")
    if not sep:
        raise SystemExit(f"judgelab: --runners wants MODULE:ATTRIBUTE, got {dotted!r}")
    return cast(Runners, getattr(importlib.import_module(module), attribute))


def run_unit(args: argparse.Namespace, files: UnitFiles) -> None:
    runners = runner_table(args.runners)
    unit = Unit(Stage(args.stage), args.unit, args.attempt, args.index, args.total)
    experiment = load_experiment(args.experiment)
    with Supervisor(args.run_dir / "logs") as supervisor:
        services = GivenAddresses(
            supervisor, args.experiment, args.redis_url, parse_addresses(args.address)
        )
        context = UnitContext(
            experiment, args.experiment, args.run_dir, args.redis_url, services, supervisor
        )
        done = threading.Event()
        writer = threading.Thread(target=_write_messages, args=(context, files, done), daemon=True)
        writer.start()
        try:
            runners[unit.stage](context, unit)
        finally:
            done.set()
            writer.join()


def _write_messages(context: UnitContext, files: UnitFiles, done: threading.Event) -> None:
    while True:
        try:
            files.write(context.messages.get(timeout=0.2))
        except queue.Empty:
            if done.is_set():
                return


def _exit_with_parent(parent: int) -> None:
    """Started from a worker thread, the child gets no parent-death signal: watch instead."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    _exit_with_parent(os.getppid())
    unit_dir = args.run_dir / args.stage / args.unit
    unit_dir.mkdir(parents=True, exist_ok=True)
    files = UnitFiles(unit_dir)
    try:
        run_unit(args, files)
    except Exception as error:  # the driver shows the reason; the traceback stays in the log
        traceback.print_exc()
        text = str(error).strip()
        reason = text.splitlines()[0] if text else ""
        files.fail(f"{type(error).__name__}: {reason}" if reason else type(error).__name__)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
