"""Where the prompts, responses and references come from, and how they are split."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from judgelab.spec.common import Issue, raise_issues
from judgelab.spec.model import ModelSpec, StrictModel

# Built-in sets shipped under judgelab/data/, with their record counts (split sizes are checked
# against them).
BUILTIN_DATASETS: dict[str, int] = {"quickstart": 96}

LOCAL_FORMATS = {".jsonl": "jsonl", ".parquet": "parquet"}


class FieldMapping(StrictModel):
    """Which column of a record holds what. Unset columns are not read."""

    prompt: str = Field(default="prompt", min_length=1, description="Column with the user prompt.")
    response: str | None = Field(
        default=None,
        description="Column with a ready-made response to be gold-scored. Unset: responses are "
        "sampled (see `data.responses`) unless `chosen`/`rejected` are given.",
    )
    chosen: str | None = Field(
        default=None, description="Column with the preferred response of a preference pair."
    )
    rejected: str | None = Field(
        default=None, description="Column with the dispreferred response of a preference pair."
    )
    reference: str | None = Field(
        default=None,
        description="Column with a reference answer, for reference-guided judges and "
        "reference-guided self-improvement.",
    )

    @model_validator(mode="after")
    def _check_pairs(self) -> FieldMapping:
        issues: list[Issue] = []
        if (self.chosen is None) != (self.rejected is None):
            missing = "rejected" if self.rejected is None else "chosen"
            issues.append(
                Issue((missing,), None, "chosen and rejected must be given together (a pair)")
            )
        raise_issues(issues)
        return self

    @property
    def has_pairs(self) -> bool:
        """Whether records carry a chosen/rejected preference pair."""
        return self.chosen is not None and self.rejected is not None


class ResponseSampling(StrictModel):
    """How judge-training responses are made when the data holds none."""

    model: ModelSpec | None = Field(
        default=None,
        description="Model that writes the responses. Unset: the policy's starting model, so "
        "the judges learn on the distribution they will later score.",
    )
    per_prompt: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Responses sampled per judge-data prompt (2+ for pairwise).",
    )
    temperature: float = Field(default=1.0, ge=0, le=2, description="Sampling temperature.")
    top_p: float = Field(default=1.0, gt=0, le=1, description="Nucleus sampling threshold.")
    max_new_tokens: int = Field(default=512, ge=1, description="Longest response in tokens.")


class SplitSizes(StrictModel):
    """Disjoint record counts carved from the source (after shuffling with `data.seed`)."""

    judge_train: int = Field(ge=1, description="Records the gold judge labels for judge training.")
    judge_eval: int = Field(
        ge=1, description="Held-out labelled records for judge agreement with gold."
    )
    policy_train: int = Field(ge=1, description="Prompts the policy is trained on.")
    policy_eval: int = Field(
        ge=1, description="Held-out prompts the gold judge scores policy samples on."
    )

    @property
    def total(self) -> int:
        """Records needed by all splits together."""
        return self.judge_train + self.judge_eval + self.policy_train + self.policy_eval


class DataSpec(StrictModel):
    """The one record source every split is drawn from."""

    source: Literal["builtin", "local", "hub"] = Field(
        description="`builtin`: a set shipped with judgelab (by `name`); `local`: a JSON Lines "
        "or Parquet file (`path`); `hub`: a dataset id on a model hub (`name`; needs network).",
    )
    name: str | None = Field(
        default=None,
        description="Builtin set name (`quickstart` or `builtin:quickstart`) or hub dataset id "
        "(`owner/name`). Not used for `local`.",
    )
    path: str | None = Field(
        default=None,
        description="Path of the `local` file, relative to the run's working directory.",
    )
    format: Literal["jsonl", "parquet"] | None = Field(
        default=None, description="Format of a `local` file. Unset: taken from its suffix."
    )
    split: str = Field(
        default="train", min_length=1, description="Split of a `hub` dataset to read."
    )
    revision: str | None = Field(
        default=None, description="Revision (tag/commit) of a `hub` dataset."
    )
    num_records: int | None = Field(
        default=None,
        ge=1,
        description="Records in a `local` or `hub` source, when known; split sizes are checked "
        "against it. Builtin sets' sizes are known already.",
    )
    fields: FieldMapping = Field(
        default_factory=FieldMapping, description="Column names of the records."
    )
    responses: ResponseSampling = Field(
        default_factory=ResponseSampling,
        description="Sampling of judge-training responses when the records carry none.",
    )
    reference_model: ModelSpec | None = Field(
        default=None,
        description="Model that writes reference answers when the records carry none "
        "(for reference-guided judges).",
    )
    splits: SplitSizes = Field(description="Record counts per split.")
    seed: int = Field(default=0, description="Seed of the shuffle that assigns records to splits.")

    @model_validator(mode="after")
    def _check_source(self) -> DataSpec:
        issues = self._source_issues()
        known = self.known_size
        if known is not None and self.splits.total > known:
            issues.append(
                Issue(
                    ("splits",),
                    self.splits.total,
                    f"judge_train + judge_eval + policy_train + policy_eval must not exceed "
                    f"the {known} records of the source",
                )
            )
        raise_issues(issues)
        return self

    def _source_issues(self) -> list[Issue]:
        issues: list[Issue] = []
        if self.source == "local":
            if not self.path:
                issues.append(Issue(("path",), self.path, "required when source is 'local'"))
            elif self.format is None and self.local_format is None:
                issues.append(
                    Issue(("path",), self.path, "must end in .jsonl or .parquet, or set format")
                )
            if self.name is not None:
                issues.append(Issue(("name",), self.name, "not used when source is 'local'"))
            return issues
        if self.path is not None:
            issues.append(
                Issue(("path",), self.path, f"only for source 'local', not {self.source!r}")
            )
        if not self.name:
            issues.append(Issue(("name",), self.name, f"required when source is {self.source!r}"))
        elif self.source == "builtin" and self.builtin_name not in BUILTIN_DATASETS:
            issues.append(
                Issue(("name",), self.name, f"unknown builtin set; available: {_builtin_list()}")
            )
        elif self.source == "hub" and "/" not in self.name:
            issues.append(Issue(("name",), self.name, "must be a hub dataset id 'owner/name'"))
        return issues

    @property
    def builtin_name(self) -> str:
        """Builtin set name without the optional `builtin:` prefix."""
        return (self.name or "").removeprefix("builtin:")

    @property
    def local_format(self) -> str | None:
        """Format of the local file: explicit, or from its suffix."""
        if self.format is not None:
            return self.format
        for suffix, fmt in LOCAL_FORMATS.items():
            if (self.path or "").endswith(suffix):
                return fmt
        return None

    @property
    def known_size(self) -> int | None:
        """Records in the source if known (declared, or a builtin set's size)."""
        if self.source == "builtin":
            return BUILTIN_DATASETS.get(self.builtin_name)
        return self.num_records

    @property
    def has_references(self) -> bool:
        """Whether reference answers are available (a column, or a model writing them)."""
        return self.fields.reference is not None or self.reference_model is not None

    @property
    def responses_per_prompt(self) -> int:
        """Responses each judge-data prompt brings (2 for preference pairs)."""
        if self.fields.has_pairs:
            return 2
        if self.fields.response is not None:
            return 1
        return self.responses.per_prompt


def _builtin_list() -> str:
    return ", ".join(sorted(BUILTIN_DATASETS))
