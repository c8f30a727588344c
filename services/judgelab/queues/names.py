"""Redis key names of one experiment's streams, dead-letter streams and processed-id sets.

Every key starts with ``jl:<experiment>:``, so one Redis can hold many experiments and
``SCAN jl:<experiment>:*`` finds all of one. The names are validated as DNS-1123 labels (as the
spec does), which keeps ``:`` out of them and the keys unambiguous.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from judgelab.spec.common import DNS_LABEL_PATTERN, DNS_LABEL_RULE

PREFIX = "jl"
_LABEL = re.compile(DNS_LABEL_PATTERN)
_MAX_LABEL = 63


def check_label(what: str, value: str) -> str:
    """``value`` if it is a DNS-1123 label of at most 63 characters, else ValueError."""
    if not isinstance(value, str) or not _LABEL.match(value) or len(value) > _MAX_LABEL:
        raise ValueError(f"{what} {value!r} {DNS_LABEL_RULE} (at most {_MAX_LABEL} characters)")
    return value


def dead_letter(stream: str) -> str:
    """The stream that receives ``stream``'s entries delivered too often (or refused)."""
    return f"{stream}:dead"


def generator_group(arm: str) -> str:
    """The consumer group of one arm's rollout generators on the shared prompts stream."""
    return f"rollout-generator-{arm}"[:63].rstrip("-")


def processed_set(stream: str, group: str) -> str:
    """The set of ids ``group`` has finished from ``stream`` (for idempotent consumers)."""
    return f"{stream}:done:{check_label('consumer group', group)}"


@dataclass(frozen=True)
class StreamNames:
    """The stream keys of one experiment: ``StreamNames("demo").rollouts("arm-a")``."""

    experiment: str

    def __post_init__(self) -> None:
        check_label("experiment name", self.experiment)

    @property
    def base(self) -> str:
        return f"{PREFIX}:{self.experiment}"

    @property
    def prompts(self) -> str:
        return f"{self.base}:prompts"

    def rollouts(self, arm: str) -> str:
        return f"{self.base}:rollouts:{check_label('arm name', arm)}"

    def scored(self, arm: str) -> str:
        return f"{self.base}:scored:{check_label('arm name', arm)}"

    @property
    def gold_requests(self) -> str:
        return f"{self.base}:gold:requests"

    @property
    def gold_results(self) -> str:
        return f"{self.base}:gold:results"

    def policy_version(self, arm: str) -> str:
        """A string key (not a stream): the latest policy version the arm's learner published."""
        return f"{self.base}:policy:{check_label('arm name', arm)}:version"

    dead_letter = staticmethod(dead_letter)
    generator_group = staticmethod(generator_group)
    processed_set = staticmethod(processed_set)
