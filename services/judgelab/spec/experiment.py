"""The `Experiment` resource: every part of a study and the rules that tie them together."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from judgelab.spec.common import DNS_LABEL_PATTERN, Issue, raise_issues
from judgelab.spec.data import DataSpec
from judgelab.spec.evaluation import EvaluationSpec
from judgelab.spec.judges import GoldJudgeSpec, ProxyJudgeSpec
from judgelab.spec.model import StrictModel
from judgelab.spec.policy import DpoSelfJudgeAlgorithm, GrpoAlgorithm, PolicySpec
from judgelab.spec.resources import ResourcesSpec
from judgelab.spec.runtime import RuntimeSpec
from judgelab.spec.status import ExperimentStatus

API_VERSION = "judgelab.io/v1alpha1"
KIND = "Experiment"
# Services are named <experiment>-<service> and Helm release names stop at 53 characters.
EXPERIMENT_NAME_MAX = 40


class ExperimentMetadata(StrictModel):
    """Object metadata. Server-set fields of a live object (uid, resourceVersion, ...) are
    ignored, so the operator can validate the object it is handed."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, allow_inf_nan=False)

    name: str = Field(
        max_length=EXPERIMENT_NAME_MAX,
        pattern=DNS_LABEL_PATTERN,
        description="Experiment name: a DNS-1123 label of at most 40 characters (it prefixes "
        "service, stream and Helm release names).",
    )
    namespace: str | None = Field(
        default=None, description="Kubernetes namespace (the CLI's --namespace wins)."
    )
    labels: dict[str, str] = Field(default_factory=dict, description="Kubernetes labels.")
    annotations: dict[str, str] = Field(default_factory=dict, description="Kubernetes annotations.")


class ArmSpec(StrictModel):
    """One policy trained against one proxy judge."""

    name: str = Field(
        max_length=63,
        pattern=DNS_LABEL_PATTERN,
        description="Unique arm name; a DNS-1123 label.",
    )
    judge: str = Field(min_length=1, description="Name of the proxy judge this arm optimises.")
    seed: int | None = Field(default=None, description="Seed of this arm. Unset: runtime.seed.")


class ExperimentSpec(StrictModel):
    """A whole study: data, gold judge, proxy judges, policy arms, evaluation."""

    description: str = Field(default="", description="Free text shown in the report.")
    data: DataSpec = Field(description="Where prompts, responses and references come from.")
    gold: GoldJudgeSpec = Field(description="The gold judge.")
    judges: list[ProxyJudgeSpec] = Field(
        default_factory=list,
        max_length=32,
        description="Proxy judges (at least one for `grpo`; `dpo-self-judge` needs none, or the "
        "pairwise one its `external_judge` names).",
    )
    arms: list[ArmSpec] = Field(
        default_factory=list,
        max_length=32,
        description="Policy arms (`grpo` only). Empty: one arm per judge, named after it.",
    )
    policy: PolicySpec = Field(description="The policy and its training algorithm.")
    evaluation: EvaluationSpec = Field(
        default_factory=EvaluationSpec, description="Gold evaluation and report extras."
    )
    resources: ResourcesSpec = Field(
        default_factory=ResourcesSpec, description="Kubernetes resources per service."
    )
    runtime: RuntimeSpec = Field(
        default_factory=RuntimeSpec, description="Redis, run directory, seed, device, logging."
    )

    @model_validator(mode="after")
    def _check_study(self) -> ExperimentSpec:
        issues = self._judge_issues() + self._arm_issues() + self._algorithm_issues()
        issues += self._evaluation_issues()
        raise_issues(issues)
        if isinstance(self.policy.algorithm, GrpoAlgorithm) and not self.arms:
            self.arms = [ArmSpec(name=j.name, judge=j.name) for j in self.judges]
        return self

    def _judge_issues(self) -> list[Issue]:
        issues: list[Issue] = []
        first_index: dict[str, int] = {}
        for i, judge in enumerate(self.judges):
            at = ("judges", i)
            if judge.name in first_index:
                issues.append(
                    Issue(
                        (*at, "name"),
                        judge.name,
                        f"duplicate judge name (also judges[{first_index[judge.name]}]); "
                        "names must be unique",
                    )
                )
            first_index.setdefault(judge.name, i)
            issues += self._judge_data_issues(i, judge)
        return issues

    def _judge_data_issues(self, i: int, judge: ProxyJudgeSpec) -> list[Issue]:
        issues: list[Issue] = []
        at = ("judges", i)
        if judge.reference_guided and not self.data.has_references:
            issues.append(
                Issue(
                    (*at, "reference_guided"),
                    True,
                    "needs reference answers: set data.fields.reference or data.reference_model",
                )
            )
        if judge.protocol == "pairwise" and self.data.responses_per_prompt < 2:
            issues.append(
                Issue(
                    (*at, "protocol"),
                    judge.protocol,
                    "pairwise judges need two responses per prompt: set data.fields.chosen/"
                    "rejected or data.responses.per_prompt >= 2",
                )
            )
        if judge.protocol == "pointwise" and judge.scale != self.gold.scale:
            issues.append(
                Issue(
                    (*at, "scale"),
                    judge.scale.model_dump(),
                    f"must equal gold.scale ({self.gold.scale.min}-{self.gold.scale.max}): "
                    "the judge is trained on gold scores",
                )
            )
        items = self.data.splits.judge_train * self.data.responses_per_prompt
        grpo = judge.training.grpo
        if judge.training.recipe == "sft+grpo" and grpo.prompts_per_step > items:
            issues.append(
                Issue(
                    (*at, "training", "grpo", "prompts_per_step"),
                    grpo.prompts_per_step,
                    f"must not exceed the {items} judge-training items "
                    "(data.splits.judge_train x responses per prompt)",
                )
            )
        return issues

    def _arm_issues(self) -> list[Issue]:
        issues: list[Issue] = []
        judge_names = [j.name for j in self.judges]
        seen: set[str] = set()
        for i, arm in enumerate(self.arms):
            if arm.name in seen:
                issues.append(
                    Issue(("arms", i, "name"), arm.name, "duplicate arm name; names must be unique")
                )
            seen.add(arm.name)
            if arm.judge not in judge_names:
                known = ", ".join(judge_names) or "none defined"
                issues.append(
                    Issue(
                        ("arms", i, "judge"),
                        arm.judge,
                        f"must name a judge in spec.judges ({known})",
                    )
                )
        return issues

    def _algorithm_issues(self) -> list[Issue]:
        algorithm = self.policy.algorithm
        if isinstance(algorithm, DpoSelfJudgeAlgorithm):
            return self._dpo_issues(algorithm)
        issues: list[Issue] = []
        if not self.judges:
            issues.append(
                Issue(("judges",), [], "grpo needs at least one proxy judge to optimise against")
            )
        if self.data.splits.policy_train < algorithm.prompts_per_step:
            issues.append(
                Issue(
                    ("policy", "algorithm", "prompts_per_step"),
                    algorithm.prompts_per_step,
                    f"must not exceed data.splits.policy_train ({self.data.splits.policy_train})",
                )
            )
        return issues

    def _dpo_issues(self, algorithm: DpoSelfJudgeAlgorithm) -> list[Issue]:
        issues: list[Issue] = []
        if self.arms:
            issues.append(
                Issue(
                    ("arms",),
                    [a.name for a in self.arms],
                    "arms are for grpo; dpo-self-judge compares its own baselines "
                    "(policy.algorithm.baselines)",
                )
            )
        needs_reference = algorithm.with_reference or "sft-on-references" in algorithm.baselines
        if needs_reference and not self.data.has_references:
            issues.append(
                Issue(
                    ("policy", "algorithm", "with_reference"),
                    algorithm.with_reference,
                    "needs reference answers: set data.fields.reference or data.reference_model",
                )
            )
        return issues + self._external_judge_issues(algorithm.external_judge)

    def _external_judge_issues(self, name: str | None) -> list[Issue]:
        if name is None:
            return []
        at = ("policy", "algorithm", "external_judge")
        found = next((j for j in self.judges if j.name == name), None)
        if found is None:
            known = ", ".join(j.name for j in self.judges) or "none defined"
            return [Issue(at, name, f"must name a judge in spec.judges ({known})")]
        if found.protocol != "pairwise":
            return [
                Issue(
                    at,
                    name,
                    f"must name a pairwise judge: {name!r} is {found.protocol} (the arm ranks "
                    "candidates by pairwise win probability)",
                )
            ]
        return []

    def _evaluation_issues(self) -> list[Issue]:
        issues: list[Issue] = []
        evaluation = self.evaluation
        algorithm = self.policy.algorithm
        if isinstance(algorithm, GrpoAlgorithm) and evaluation.every_n_steps > algorithm.steps:
            issues.append(
                Issue(
                    ("evaluation", "every_n_steps"),
                    evaluation.every_n_steps,
                    f"must not exceed policy.algorithm.steps ({algorithm.steps})",
                )
            )
        held_out = self.data.splits.policy_eval
        if evaluation.heldout_prompts is not None and evaluation.heldout_prompts > held_out:
            issues.append(
                Issue(
                    ("evaluation", "heldout_prompts"),
                    evaluation.heldout_prompts,
                    f"must not exceed data.splits.policy_eval ({held_out})",
                )
            )
        return issues


class Experiment(StrictModel):
    """A judgelab study: gold-label data, train proxy judges, RL a policy against each proxy
    judge, and measure with the gold judge how much of the proxy reward was real."""

    api_version: Literal["judgelab.io/v1alpha1"] = Field(
        alias="apiVersion", description="API version: judgelab.io/v1alpha1."
    )
    kind: Literal["Experiment"] = Field(description="Resource kind: Experiment.")
    metadata: ExperimentMetadata = Field(description="Name, namespace, labels, annotations.")
    spec: ExperimentSpec = Field(description="What to study.")
    status: ExperimentStatus | None = Field(
        default=None, description="Where the study stands (written by the operator)."
    )
