"""Runner table that tests/unit/test_runtime_unit_process.py runs in a child process.

The unit's name says what to do: ``report`` (progress, arm numbers, the annotator's address
into a file), ``fail`` (raise), ``hang`` (sleep until stopped).
"""

from __future__ import annotations

import time

from judgelab.phases import ArmProgress, Stage
from judgelab.runtime.context import UnitContext
from judgelab.runtime.progress import Unit


def scripted(context: UnitContext, unit: Unit) -> None:
    if unit.name == "fail":
        raise ValueError("rows 3 and 7 have no prompt\nsecond line")
    if unit.name == "hang":
        (context.unit_dir(unit) / "started").write_text("yes")
        time.sleep(600)
    context.report(1, 2, "items")
    context.report(2, 2, "items")
    context.update_arm(ArmProgress(unit.name, "plain", step=4, proxy_reward=6.5))
    address = context.address("annotator")
    (context.unit_dir(unit) / "seen.txt").write_text(f"{address} attempt {unit.attempt}")


TABLE = {stage: scripted for stage in Stage}
