"""The phase machine's state: plain frozen data that round-trips through JSON."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal, cast

from judgelab.phases.stages import STAGES, Stage
from judgelab.spec.status import Phase

UnitStatus = Literal["pending", "running", "retrying", "succeeded", "failed"]
ConditionStatus = Literal["True", "False", "Unknown"]
STATE_VERSION = 1
TERMINAL: tuple[Phase, ...] = ("Succeeded", "Failed")


@dataclass(frozen=True)
class UnitState:
    """One unit of work: a judge to train, an arm to train, the annotation, the report."""

    status: UnitStatus = "pending"
    attempts: int = 0
    failures: int = 0
    message: str = ""
    retry_at: datetime | None = None


@dataclass(frozen=True)
class ArmProgress:
    """Latest numbers of one policy arm (what `status.arms[]` shows)."""

    name: str
    judge: str = ""
    step: int = 0
    proxy_reward: float | None = None
    gold_reward: float | None = None
    kl: float | None = None
    hacking: bool = False


@dataclass(frozen=True)
class Condition:
    """A Kubernetes-style condition; `since` changes only when `status` does."""

    type: str
    status: ConditionStatus
    reason: str
    message: str
    since: datetime
    generation: int | None = None


@dataclass(frozen=True)
class Record:
    """One line of the phase log; the operator turns each into a Kubernetes Event."""

    at: datetime
    reason: str
    message: str
    stage: str = ""
    unit: str = ""
    attempt: int = 0
    warning: bool = False


@dataclass(frozen=True)
class PhaseState:
    """Everything the machine knows about one study. Transitions return new instances."""

    spec: Mapping[str, Any]
    generation: int | None
    observed_generation: int | None
    phase: Phase
    message: str
    current: Stage | None
    units: Mapping[Stage, Mapping[str, UnitState]]
    services: Mapping[str, bool] = field(default_factory=dict)
    arms: tuple[ArmProgress, ...] = ()
    conditions: tuple[Condition, ...] = ()
    log: tuple[Record, ...] = ()

    @property
    def terminal(self) -> bool:
        """Succeeded or Failed: nothing runs any more."""
        return self.phase in TERMINAL

    def unit(self, stage: Stage, name: str) -> UnitState:
        """State of one unit (KeyError if the plan has no such unit)."""
        return self.units[stage][name]

    def condition(self, type_: str) -> Condition | None:
        """The condition of that type, if set."""
        return next((c for c in self.conditions if c.type == type_), None)

    def launched(self, stage: Stage, name: str) -> int:
        """How often the phase log says the unit was launched (resume must not rerun work)."""
        return sum(
            1
            for r in self.log
            if r.reason == "UnitLaunched" and r.stage == stage.value and r.unit == name
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (datetimes as ISO 8601 strings)."""
        raw = asdict(self)
        units = self.units.items()
        raw["units"] = {s.value: {n: asdict(u) for n, u in us.items()} for s, us in units}
        raw["spec"] = dict(self.spec)
        raw["current"] = self.current.value if self.current else None
        raw["services"] = dict(self.services)
        raw["version"] = STATE_VERSION
        return cast(dict[str, Any], _isoformat(raw))

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> PhaseState:
        """Inverse of :meth:`to_dict`; ValueError on an unknown version."""
        if raw.get("version") != STATE_VERSION:
            raise ValueError(f"unknown phase state version {raw.get('version')!r}")
        units = {
            Stage(s): {n: UnitState(**_times(u, "retry_at")) for n, u in us.items()}
            for s, us in raw["units"].items()
        }
        return cls(
            spec=dict(raw["spec"]),
            generation=raw["generation"],
            observed_generation=raw["observed_generation"],
            phase=raw["phase"],
            message=raw["message"],
            current=Stage(raw["current"]) if raw["current"] else None,
            units={s: units[s] for s in STAGES if s in units},
            services=dict(raw["services"]),
            arms=tuple(ArmProgress(**a) for a in raw["arms"]),
            conditions=tuple(Condition(**_times(c, "since")) for c in raw["conditions"]),
            log=tuple(Record(**_times(r, "at")) for r in raw["log"]),
        )


def _isoformat(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _isoformat(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_isoformat(v) for v in value]
    return value


def _times(raw: Mapping[str, Any], key: str) -> dict[str, Any]:
    out = dict(raw)
    if out.get(key) is not None:
        out[key] = datetime.fromisoformat(out[key])
    return out
