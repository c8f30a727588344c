"""What the user sees while a run goes: rich progress bars on a terminal, plain lines otherwise.

Plain lines look like ``[train-judges] unit 2/2 reasoning: succeeded in 41.0 s (2/2 done)``.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Protocol, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from judgelab.phases import Stage


@dataclass(frozen=True)
class Unit:
    """One unit of work as a runner sees it: stage, name, attempt and place in its stage."""

    stage: Stage
    name: str
    attempt: int
    index: int  # 1-based place in the stage's plan
    total: int  # units in the stage

    @property
    def label(self) -> str:
        return f"[{self.stage.value}] unit {self.index}/{self.total} {self.name}"


class ProgressView(Protocol):
    def stage_started(self, stage: Stage, total: int, done: int) -> None: ...
    def unit_started(self, unit: Unit) -> None: ...
    def unit_progress(self, unit: Unit, done: int, total: int, note: str) -> None: ...
    def unit_succeeded(self, unit: Unit, seconds: float) -> None: ...
    def unit_failed(self, unit: Unit, error: str, retry_in_s: float | None) -> None: ...
    def event(self, text: str) -> None: ...
    def close(self) -> None: ...


def make_progress(stream: TextIO | None = None, tty: bool | None = None) -> ProgressView:
    """Rich bars when `stream` (default stderr) is a terminal, plain lines when it is not."""
    out = stream if stream is not None else sys.stderr
    interactive = out.isatty() if tty is None else tty
    return RichProgress(out) if interactive else PlainProgress(out)


class _StageClock:
    """Units done per stage and how long they took, for a remaining-time estimate."""

    def __init__(self) -> None:
        self.done: dict[Stage, int] = {}
        self.total: dict[Stage, int] = {}
        self.seconds: dict[Stage, float] = {}
        self.timed: dict[Stage, int] = {}

    def start(self, stage: Stage, total: int, done: int) -> None:
        self.total[stage], self.done[stage] = total, done

    def finish(self, stage: Stage, seconds: float) -> None:
        self.done[stage] = self.done.get(stage, 0) + 1
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds
        self.timed[stage] = self.timed.get(stage, 0) + 1

    def eta_s(self, stage: Stage) -> float | None:
        timed = self.timed.get(stage, 0)
        if not timed:
            return None
        left = self.total.get(stage, 0) - self.done.get(stage, 0)
        return left * self.seconds[stage] / timed


class PlainProgress:
    """One line per event, for logs and CI."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.clock = _StageClock()

    def _line(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def stage_started(self, stage: Stage, total: int, done: int) -> None:
        self.clock.start(stage, total, done)
        self._line(f"[{stage.value}] started: {total} units, {done} done already")

    def unit_started(self, unit: Unit) -> None:
        self._line(f"{unit.label}: started (attempt {unit.attempt})")

    def unit_progress(self, unit: Unit, done: int, total: int, note: str) -> None:
        self._line(f"{unit.label}: {done}/{total}" + (f" {note}" if note else ""))

    def unit_succeeded(self, unit: Unit, seconds: float) -> None:
        self.clock.finish(unit.stage, seconds)
        done, total = self.clock.done[unit.stage], self.clock.total.get(unit.stage, unit.total)
        eta = self.clock.eta_s(unit.stage)
        left = f", about {eta:.0f} s left" if eta and done < total else ""
        self._line(f"{unit.label}: succeeded in {seconds:.1f} s ({done}/{total} done{left})")

    def unit_failed(self, unit: Unit, error: str, retry_in_s: float | None) -> None:
        then = f"retry in {retry_in_s:g} s" if retry_in_s is not None else "no attempts left"
        self._line(f"{unit.label}: attempt {unit.attempt} failed: {error}; {then}")

    def event(self, text: str) -> None:
        self._line(f"[runtime] {text}")

    def close(self) -> None:
        self.stream.flush()


class RichProgress:
    """A bar per stage (units done, elapsed, ETA) and one per running unit that reports steps."""

    def __init__(self, stream: TextIO) -> None:
        self.console = Console(file=stream)
        self.bars = Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
        )
        self.stages: dict[Stage, TaskID] = {}
        self.units: dict[tuple[Stage, str], TaskID] = {}
        self.started: dict[tuple[Stage, str], float] = {}
        self.bars.start()

    def stage_started(self, stage: Stage, total: int, done: int) -> None:
        self.stages[stage] = self.bars.add_task(stage.value, total=total, completed=done)

    def unit_started(self, unit: Unit) -> None:
        self.started[(unit.stage, unit.name)] = time.monotonic()
        self._print(f"{unit.label}: started (attempt {unit.attempt})")

    def unit_progress(self, unit: Unit, done: int, total: int, note: str) -> None:
        key = (unit.stage, unit.name)
        if key not in self.units:
            self.units[key] = self.bars.add_task(f"  {unit.name}", total=total)
        self.bars.update(
            self.units[key],
            completed=done,
            total=total,
            description=f"  {unit.name} {note}".rstrip(),
        )

    def unit_succeeded(self, unit: Unit, seconds: float) -> None:
        self._drop_unit(unit)
        if unit.stage in self.stages:
            self.bars.advance(self.stages[unit.stage])
        self._print(f"{unit.label}: succeeded in {seconds:.1f} s")

    def unit_failed(self, unit: Unit, error: str, retry_in_s: float | None) -> None:
        self._drop_unit(unit)
        then = f"retry in {retry_in_s:g} s" if retry_in_s is not None else "no attempts left"
        failed = Text(f"{unit.label}: attempt {unit.attempt} failed", style="red")
        self.console.print(Text.assemble(failed, f": {error}; {then}"), highlight=False)

    def event(self, text: str) -> None:
        self._print(f"[runtime] {text}")

    def close(self) -> None:
        self.bars.stop()

    def _print(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False)

    def _drop_unit(self, unit: Unit) -> None:
        task = self.units.pop((unit.stage, unit.name), None)
        if task is not None:
            self.bars.remove_task(task)
