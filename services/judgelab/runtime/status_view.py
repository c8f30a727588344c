"""`judgelab status RUN_DIR`: the run's phase, stages, units, services and arms, as text."""

from __future__ import annotations

from pathlib import Path

from judgelab.phases import STAGE_INFO, STAGES, PhaseState
from judgelab.runtime.lock import runtime_pid
from judgelab.runtime.store import RunStore


def load_status(run_dir: Path) -> PhaseState:
    """The saved phase state of a run (NotARunDir with a readable message if there is none)."""
    return RunStore(run_dir).load()


def render_status(run_dir: Path, state: PhaseState) -> str:
    """A few lines a person reads: what runs now, what is done, what failed and why."""
    pid = runtime_pid(run_dir)
    if state.terminal:
        running = ""
    elif pid is not None:
        running = f" (runtime pid {pid} is working on it)"
    else:
        running = f" (stopped: continue with `judgelab run --resume {run_dir}`)"
    lines = [f"run:     {run_dir}", f"phase:   {state.phase}{running}"]
    if state.message:
        lines.append(f"message: {state.message}")
    lines.append("stages:")
    for stage in STAGES:
        units = state.units.get(stage, {})
        done = sum(1 for u in units.values() if u.status == "succeeded")
        marker = "*" if stage is state.current else " "
        condition = state.condition(STAGE_INFO[stage].condition)
        summary = f"{done}/{len(units)} done" if units else "nothing to do"
        reason = f" [{condition.reason}]" if condition is not None else ""
        lines.append(f" {marker} {stage.value:<13} {summary}{reason}")
        for unit_name, unit in units.items():
            detail = f"attempts {unit.attempts}"
            if unit.failures:
                detail += f", failures {unit.failures}"
            if unit.retry_at is not None and unit.status == "retrying":
                detail += f", retry at {unit.retry_at.isoformat(timespec='seconds')}"
            note = f" — {unit.message}" if unit.message and unit.status != "succeeded" else ""
            lines.append(f"      {unit_name:<20} {unit.status:<10} {detail}{note}")
    if state.services:
        ready = ", ".join(f"{s} {'up' if up else 'down'}" for s, up in state.services.items())
        lines.append(f"services: {ready}")
    for arm in state.arms:
        numbers = [f"step {arm.step}"]
        numbers += [f"proxy {arm.proxy_reward:.3f}"] if arm.proxy_reward is not None else []
        numbers += [f"gold {arm.gold_reward:.3f}"] if arm.gold_reward is not None else []
        numbers += [f"KL {arm.kl:.4f}"] if arm.kl is not None else []
        hacking = " HACKING" if arm.hacking else ""
        lines.append(f"arm {arm.name} (judge {arm.judge or '-'}): {', '.join(numbers)}{hacking}")
    return "\n".join(lines) + "\n"
