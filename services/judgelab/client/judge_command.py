"""``judgelab judge``: score a JSONL file with a running judge pool, JSONL out.

Every line is checked first (nothing is sent while any line is bad); results are written as
they arrive, in input order, one JSON object per input line. Failures are one readable
message and an exit code, never a traceback: 2 for bad input, 1 for a failed call.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from judgelab.client.channel import ChannelConfig
from judgelab.client.errors import ApiError
from judgelab.client.jsonl import BadInput, read_samples
from judgelab.client.sync import JudgePoolClient


class JudgeCommandError(Exception):
    """What to tell the user, and the exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class JudgeJob:
    input: Path
    output: Path | None  # None: stdout
    judge: str
    channel: ChannelConfig
    chunk_size: int = 32
    max_in_flight: int = 2
    timeout_s: float = 120.0
    experiment: str = ""
    progress: bool = True


def run_judge_job(job: JudgeJob) -> int:
    """Score the file; returns the number of lines written. Raises JudgeCommandError."""
    try:
        samples = read_samples(job.input)
    except BadInput as error:
        raise JudgeCommandError(f"bad input, nothing was scored:\n{error}", 2) from None
    written = 0
    try:
        with (
            _output(job.output) as out,
            _progress(len(samples), job.progress) as advance,
            JudgePoolClient(job.channel, timeout_s=job.timeout_s) as client,
        ):
            results = client.score_all(
                job.judge,
                samples,
                chunk_size=job.chunk_size,
                max_in_flight=job.max_in_flight,
                experiment=job.experiment,
                on_progress=advance,
            )
            for result in results:
                out.write(json.dumps(result.to_dict(), ensure_ascii=False) + "\n")
                written += 1
    except ApiError as error:
        raise JudgeCommandError(_explain(error, job, written), 1) from None
    except OSError as error:  # an unreadable certificate / token file, an unwritable output
        raise JudgeCommandError(f"{error.filename or ''}: {error.strerror or error}", 1) from None
    return written


def _explain(error: ApiError, job: JudgeJob, written: int) -> str:
    lines = [f"judge pool at {job.channel.address}: {error}"]
    lines += [f"  {d.field or '(request)'}: {d.reason}: {d.message}" for d in error.details]
    if written:
        lines.append(f"{written} results were written before the failure")
    return "\n".join(lines)


@contextmanager
def _output(path: Path | None) -> Iterator[TextIO]:
    if path is None:
        yield sys.stdout
        return
    with path.open("w", encoding="utf-8") as handle:
        yield handle


@contextmanager
def _progress(total: int, enabled: bool) -> Iterator[Callable[[int], None]]:
    if not enabled:
        yield lambda _count: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    columns = (BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task("scoring", total=total)
        yield lambda count: bar.advance(task, count)
