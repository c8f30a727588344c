"""Child processes in their own process group, and stopping a whole tree of them.

Each child leads a new session, so a terminal's Ctrl-C reaches only the runtime, which then
stops the children in order. On Linux a child started from the main thread also gets
SIGTERM if the runtime dies without cleaning up (kill -9, OOM killer).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO

_PR_SET_PDEATHSIG = 1
ProcessKey = tuple[int, int]  # (pid, start time in clock ticks): a pid that cannot be reused


def spawn(
    argv: Sequence[str], log: IO[bytes], env: Mapping[str, str], cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start `argv` in a new session, stdout and stderr into `log`."""
    return subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=dict(env),
        cwd=cwd,
        start_new_session=True,
        preexec_fn=_parent_death_signal(),
    )


def _parent_death_signal() -> Callable[[], None] | None:
    # The kernel ties PDEATHSIG to the creating *thread*: only the main thread lives as long
    # as the runtime, so children started from worker threads do without it.
    if not sys.platform.startswith("linux") or threading.current_thread() is not (
        threading.main_thread()
    ):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def set_signal() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

    return set_signal


def process_tree(pid: int) -> list[ProcessKey]:
    """`pid` and all its descendants (from /proc; just `pid` where there is no /proc)."""
    table = _proc_table()
    if not table:
        return [(pid, 0)]
    children: dict[int, list[int]] = {}
    for child, (parent, _) in table.items():
        children.setdefault(parent, []).append(child)
    found: list[ProcessKey] = []
    todo = [pid]
    while todo:
        current = todo.pop()
        if current in table:
            found.append((current, table[current][1]))
        todo.extend(children.get(current, ()))
    return found


def alive(keys: Iterable[ProcessKey]) -> list[ProcessKey]:
    """The processes among `keys` that still exist (and are not zombies)."""
    table = _proc_table()
    if not table:
        return [k for k in keys if _exists(k[0])]
    return [k for k in keys if k[0] in table and table[k[0]][1] == k[1]]


def stop_trees(
    processes: Sequence[subprocess.Popen[bytes]], grace_s: float, poll_s: float = 0.05
) -> None:
    """SIGTERM each process group, SIGKILL what is left after `grace_s`, reap the leaders.

    Descendants are snapshotted first so that those which left the group (or outlived their
    parent) are killed too.
    """
    trees = {p.pid: process_tree(p.pid) for p in processes if p.poll() is None}
    for process in processes:
        _signal_group(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if all(p.poll() is not None for p in processes) and not _left(trees, processes):
            break
        time.sleep(poll_s)
    for process in processes:
        _signal_group(process.pid, signal.SIGKILL)
    for key in _left(trees, processes):
        _kill(key[0])
    for process in processes:
        process.wait()


def _left(
    trees: Mapping[int, list[ProcessKey]], processes: Sequence[subprocess.Popen[bytes]]
) -> list[ProcessKey]:
    leaders = {p.pid for p in processes}
    keys = [k for tree in trees.values() for k in tree if k[0] not in leaders]
    return alive(keys)


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _proc_table() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, start time) of every live, non-zombie process; {} without /proc."""
    proc = Path("/proc")
    if not (proc / "self" / "stat").exists():
        return {}
    table: dict[int, tuple[int, int]] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        if fields[0] == "Z":
            continue
        table[int(entry.name)] = (int(fields[1]), int(fields[19]))
    return table
