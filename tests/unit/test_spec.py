"""The Experiment spec: examples, published defaults, help text, round trips and every error."""

from __future__ import annotations

import copy
import math
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from judgelab.spec import Experiment, SpecError, load_experiment, validate_mapping, validate_text
from judgelab.spec.data import BUILTIN_DATASETS
from judgelab.spec.policy import DpoSelfJudgeAlgorithm, GrpoAlgorithm

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
BAD_SPECS = sorted((ROOT / "tests/data/bad-specs").glob("*.yaml"))
BUILTIN_DATA = ROOT / "services/judgelab/data"

MINIMAL: dict[str, Any] = {
    "apiVersion": "judgelab.io/v1alpha1",
    "kind": "Experiment",
    "metadata": {"name": "minimal"},
    "spec": {
        "data": {
            "source": "builtin",
            "name": "quickstart",
            "splits": {"judge_train": 16, "judge_eval": 8, "policy_train": 8, "policy_eval": 8},
        },
        "gold": {"model": {}},
        "judges": [
            {"name": "plain", "model": {}},
            {"name": "thinker", "model": {}, "reasoning": True},
        ],
        "policy": {"model": {}, "algorithm": {"name": "grpo", "prompts_per_step": 8}},
    },
}


def minimal(**spec_changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(MINIMAL)
    doc["spec"].update(spec_changes)
    return doc


def problems_of(doc: object) -> list[str]:
    with pytest.raises(SpecError) as caught:
        validate_mapping(doc, "t.yaml")
    return str(caught.value).splitlines()


# --- examples ----------------------------------------------------------------------------------


def test_both_examples_are_present() -> None:
    assert {p.name for p in EXAMPLES} >= {"quickstart.yaml", "reasoning-vs-plain.yaml"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_validates(path: Path) -> None:
    experiment = load_experiment(path)
    assert experiment.metadata.name == path.stem
    if experiment.spec.policy.algorithm.name == "dpo-self-judge":
        assert not experiment.spec.arms, "a self-improvement study's arms are its baselines"
        return
    assert experiment.spec.judges, "every GRPO example studies at least one proxy judge"
    assert [a.judge for a in experiment.spec.arms] == [j.name for j in experiment.spec.judges]


def test_quickstart_is_small_enough_for_two_cores() -> None:
    spec = load_experiment(ROOT / "examples/quickstart.yaml").spec
    assert spec.data.source == "builtin"
    assert spec.data.splits.judge_train <= 64 and spec.data.splits.judge_eval <= 16
    algorithm = spec.policy.algorithm
    assert isinstance(algorithm, GrpoAlgorithm)
    assert algorithm.steps <= 10 and algorithm.group_size <= 4
    assert spec.policy.generation.max_new_tokens <= 64
    models = [spec.gold.model, spec.policy.model, *(j.model for j in spec.judges)]
    assert all(m.name == "builtin:smollm2-135m-instruct" for m in models)
    assert {j.reasoning for j in spec.judges} == {True, False}
    assert {j.protocol for j in spec.judges} == {"pointwise"}
    assert spec.gold.reasoning_effort == "high"


def test_quickstart_fits_the_shipped_builtin_set() -> None:
    shipped = BUILTIN_DATA / "quickstart.jsonl"
    records = [line for line in shipped.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert BUILTIN_DATASETS["quickstart"] == len(records)
    splits = load_experiment(ROOT / "examples/quickstart.yaml").spec.data.splits
    assert splits.total <= len(records)


def test_published_example_follows_the_recipe() -> None:
    spec = load_experiment(ROOT / "examples/reasoning-vs-plain.yaml").spec
    gold = spec.gold
    assert (gold.model.engine, gold.model.name) == ("openai", "openai/gpt-oss-120b")
    assert gold.model.base_url == "http://vllm-gold:8000/v1"
    assert (gold.reasoning_effort, gold.temperature, gold.max_tokens) == ("high", 0.0, 8192)
    assert {j.model.name for j in spec.judges} == {"Qwen/Qwen3-4B"}
    assert sorted(j.reasoning for j in spec.judges) == [False, True]
    assert all((j.scale.min, j.scale.max) == (0, 9) for j in spec.judges)
    assert spec.policy.model.name == "meta-llama/Llama-3.1-8B-Instruct"
    algorithm = spec.policy.algorithm
    assert isinstance(algorithm, GrpoAlgorithm)
    assert (algorithm.learning_rate, algorithm.group_size, algorithm.beta) == (1e-6, 8, 0.0)
    assert spec.policy.generation.temperature == 0.7
    assert sum(r.gpus for r in (spec.resources.judge_pool, spec.resources.learner)) >= 2


# --- defaults ----------------------------------------------------------------------------------


def test_defaults_follow_the_published_recipe() -> None:
    spec = validate_mapping(minimal()).spec
    assert spec.gold.reasoning_effort == "high"
    assert spec.gold.temperature == 0.0
    assert spec.gold.max_tokens == 8192
    assert (spec.gold.scale.min, spec.gold.scale.max) == (0, 9)
    plain, thinker = spec.judges
    assert (plain.scale.min, plain.scale.max) == (0, 9)
    assert plain.protocol == "pointwise"
    assert plain.training.recipe == "sft"
    assert thinker.training.recipe == "sft+grpo"
    grpo_judge = thinker.training.grpo
    assert (grpo_judge.num_generations, grpo_judge.learning_rate, grpo_judge.beta) == (8, 1e-6, 0.0)
    algorithm = spec.policy.algorithm
    assert isinstance(algorithm, GrpoAlgorithm)
    assert algorithm.learning_rate == 1e-6
    assert algorithm.group_size == 8
    assert algorithm.beta == 0.0
    assert (algorithm.epsilon_low, algorithm.epsilon_high) == (0.2, 0.2)
    assert algorithm.scale_rewards is True
    assert spec.policy.generation.temperature == 0.7
    assert spec.policy.generation.top_p == 1.0
    assert spec.policy.lora.enabled is True
    assert spec.resources.learner.gpus == 0, "GPUs are never guessed"


def test_policy_algorithm_defaults_to_grpo() -> None:
    doc = minimal()
    del doc["spec"]["policy"]["algorithm"]
    doc["spec"]["data"]["splits"]["policy_train"] = 32
    assert isinstance(validate_mapping(doc).spec.policy.algorithm, GrpoAlgorithm)


def test_dpo_self_judge_defaults() -> None:
    doc = minimal(judges=[], policy={"model": {}, "algorithm": {"name": "dpo-self-judge"}})
    doc["spec"]["data"]["fields"] = {"reference": "reference"}
    spec = validate_mapping(doc).spec
    algorithm = spec.policy.algorithm
    assert isinstance(algorithm, DpoSelfJudgeAlgorithm)
    assert (algorithm.num_candidates, algorithm.temperature, algorithm.top_p) == (5, 0.8, 0.95)
    assert algorithm.beta == 0.1
    assert algorithm.with_reference is True
    assert spec.arms == []


def test_arms_default_to_one_per_judge() -> None:
    spec = validate_mapping(minimal()).spec
    assert [(a.name, a.judge) for a in spec.arms] == [("plain", "plain"), ("thinker", "thinker")]


def test_explicit_arms_are_kept() -> None:
    spec = validate_mapping(minimal(arms=[{"name": "only", "judge": "thinker"}])).spec
    assert [(a.name, a.judge) for a in spec.arms] == [("only", "thinker")]


# --- help text ---------------------------------------------------------------------------------


def _models(root: type[BaseModel]) -> set[type[BaseModel]]:
    found: set[type[BaseModel]] = set()
    pending: list[Any] = [root]
    while pending:
        tp = pending.pop()
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            if tp in found:
                continue
            found.add(tp)
            pending.extend(f.annotation for f in tp.model_fields.values())
        else:
            pending.extend(typing.get_args(tp))
    return found


def test_the_walk_reaches_every_part() -> None:
    names = {m.__name__ for m in _models(Experiment)}
    expected = {
        "ModelSpec", "DataSpec", "FieldMapping", "SplitSizes", "GoldJudgeSpec", "ProxyJudgeSpec",
        "ScoreScale", "JudgeTrainingSpec", "JudgeGrpoSpec", "SftSpec", "LoraSpec", "PolicySpec",
        "GenerationSpec", "GrpoAlgorithm", "DpoSelfJudgeAlgorithm", "EvaluationSpec",
        "ResourcesSpec", "ServiceResources", "RuntimeSpec", "ExperimentStatus", "Condition",
        "ArmStatus", "ArmSpec", "ExperimentMetadata",
    }  # fmt: skip
    assert expected <= names


def test_every_field_has_help_text() -> None:
    missing = [
        f"{model.__name__}.{name}"
        for model in _models(Experiment)
        for name, field in model.model_fields.items()
        if not (field.description and len(field.description.strip()) >= 8)
    ]
    assert missing == []


# --- round trips -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_round_trip_through_dict_and_yaml(path: Path) -> None:
    experiment = load_experiment(path)
    dumped = experiment.model_dump(by_alias=True, mode="json", exclude_none=True)
    assert validate_mapping(dumped) == experiment
    text = yaml.safe_dump(dumped, sort_keys=False, allow_unicode=True)
    again = validate_text(text, "dumped.yaml")
    assert again == experiment
    assert again.model_dump(by_alias=True, mode="json") == experiment.model_dump(
        by_alias=True, mode="json"
    )


def _variants() -> list[dict[str, Any]]:
    pairwise = minimal(arms=[{"name": "arm-a", "judge": "plain", "seed": 3}])
    pairwise["spec"]["judges"][0].update(protocol="pairwise", rubric=True, template="pair-v2")
    pairwise["spec"]["judges"][1].update(reference_guided=True, reasoning_budget=256)
    pairwise["spec"]["data"] = {
        "source": "local",
        "path": "data/prefs.parquet",
        "fields": {"chosen": "good", "rejected": "bad", "reference": "ref"},
        "splits": {"judge_train": 16, "judge_eval": 4, "policy_train": 8, "policy_eval": 4},
    }
    pairwise["spec"]["resources"] = {"learner": {"replicas": 2, "gpus": 1, "memory": "8Gi"}}
    pairwise["spec"]["runtime"] = {"redis_url": "redis://127.0.0.1:6379/0", "log_level": "debug"}
    dpo = minimal(judges=[], policy={"model": {}, "algorithm": {"name": "dpo-self-judge"}})
    dpo["spec"]["data"]["reference_model"] = {"name": "builtin:smollm2-135m-instruct"}
    dpo["spec"]["evaluation"] = {"baseline_answers": "answers.jsonl", "cross_judge_matrix": False}
    return [pairwise, dpo]


@pytest.mark.parametrize("doc", _variants(), ids=["pairwise-local", "dpo-self-judge"])
def test_round_trip_of_every_variant(doc: dict[str, Any]) -> None:
    experiment = validate_mapping(doc)
    dumped = experiment.model_dump(by_alias=True, mode="json")
    assert validate_mapping(dumped) == experiment
    assert validate_mapping(experiment.model_dump(by_alias=True, mode="json", exclude_unset=True))


def test_scientific_notation_reads_as_a_number() -> None:
    text = yaml.safe_dump(MINIMAL).replace(
        "prompts_per_step: 8", "prompts_per_step: 8\n      learning_rate: 3e-6"
    )
    algorithm = validate_text(text).spec.policy.algorithm
    assert isinstance(algorithm, GrpoAlgorithm)
    assert algorithm.learning_rate == pytest.approx(3e-6)


# --- errors ------------------------------------------------------------------------------------


def _expectation(path: Path) -> str:
    first = path.read_bytes().splitlines()[0].decode("utf-8")
    assert first.startswith("# expect: "), f"{path.name}: first line must be '# expect: ...'"
    return first.removeprefix("# expect: ")


def test_there_are_enough_bad_specs() -> None:
    assert len(BAD_SPECS) >= 15
    assert len({_expectation(p) for p in BAD_SPECS}) == len(BAD_SPECS), "one rule per file"


@pytest.mark.parametrize("path", BAD_SPECS, ids=lambda p: p.stem)
def test_bad_spec_fails_with_its_one_line_message(path: Path) -> None:
    with pytest.raises(SpecError) as caught:
        load_experiment(path)
    lines = str(caught.value).splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{path}: "), lines[0]
    assert _expectation(path) in lines[0]


def test_field_paths_are_dotted_with_list_indexes() -> None:
    doc = minimal()
    doc["spec"]["judges"][1]["scale"] = {"min": 12, "max": 9}
    assert problems_of(doc) == [
        "t.yaml: spec.judges[1].scale.min: 12 — must be less than scale.max (9)"
    ]


def test_every_problem_gets_its_own_line() -> None:
    doc = minimal()
    doc["metadata"]["name"] = "Bad Name"
    doc["spec"]["policy"]["algorithm"]["steps"] = 0
    doc["spec"]["policy"]["algorithm"]["epsilon_low"] = 0
    doc["spec"]["judges"][0]["protocol"] = "listwise"
    lines = problems_of(doc)
    assert len(lines) == 4, lines
    assert all(line.startswith("t.yaml: ") and " — " in line for line in lines)
    paths = {line.split(": ")[1] for line in lines}
    assert paths == {
        "metadata.name",
        "spec.policy.algorithm.steps",
        "spec.policy.algorithm.epsilon_low",
        "spec.judges[0].protocol",
    }


def test_several_rules_of_one_model_are_all_reported() -> None:
    doc = minimal(arms=[{"name": "a", "judge": "nope"}, {"name": "a", "judge": "plain"}])
    doc["spec"]["judges"][0]["reference_guided"] = True
    lines = problems_of(doc)
    assert any("spec.arms[0].judge" in line for line in lines)
    assert any("spec.arms[1].name" in line for line in lines)
    assert any("spec.judges[0].reference_guided" in line for line in lines)


def test_reference_guided_judge_is_fine_with_a_reference_model() -> None:
    doc = minimal()
    doc["spec"]["judges"][0]["reference_guided"] = True
    doc["spec"]["data"]["reference_model"] = {}
    assert validate_mapping(doc).spec.judges[0].reference_guided is True


def test_pairwise_judge_is_fine_with_preference_pairs() -> None:
    doc = minimal()
    doc["spec"]["judges"][0]["protocol"] = "pairwise"
    doc["spec"]["data"].update(
        source="local", path="prefs.jsonl", fields={"chosen": "chosen", "rejected": "rejected"}
    )
    del doc["spec"]["data"]["name"]
    spec = validate_mapping(doc).spec
    assert spec.data.local_format == "jsonl"
    assert spec.judges[0].protocol == "pairwise"


def test_missing_file_is_one_line() -> None:
    with pytest.raises(SpecError) as caught:
        load_experiment("/nonexistent/experiment.yaml")
    assert str(caught.value) == "/nonexistent/experiment.yaml: no such file"


def test_directory_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as caught:
        load_experiment(tmp_path)
    assert str(caught.value) == f"{tmp_path}: is a directory, not an Experiment file"


def test_really_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_bytes(b"")
    with pytest.raises(SpecError) as caught:
        load_experiment(path)
    assert "empty — expected an Experiment mapping" in str(caught.value)


def test_scalar_document(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as caught:
        validate_text("just a string", "s.yaml")
    assert str(caught.value) == (
        "s.yaml: top level is a string — must be a mapping with apiVersion, kind, metadata and spec"
    )


def test_deeply_nested_yaml_is_one_line() -> None:
    with pytest.raises(SpecError) as caught:
        validate_text("[" * 5000 + "]" * 5000, "deep.yaml")
    assert len(str(caught.value).splitlines()) == 1


def test_nan_is_refused_everywhere() -> None:
    doc = minimal()
    doc["spec"]["gold"]["model"]["timeout_s"] = math.inf
    assert problems_of(doc) == [
        "t.yaml: spec.gold.model.timeout_s: Infinity — must be a finite number"
    ]


# --- fuzzing: anything in, SpecError or an Experiment out --------------------------------------

_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**12), 10**12), st.floats(allow_nan=True),
    st.text(max_size=12), st.lists(st.integers(), max_size=3), st.dictionaries(
        st.text(max_size=5), st.integers(), max_size=2),
)  # fmt: skip


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out += _paths(value, (*prefix, index))
    return out


QUICKSTART = yaml.safe_load((ROOT / "examples/quickstart.yaml").read_text(encoding="utf-8"))
QUICKSTART_PATHS = _paths(QUICKSTART)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(QUICKSTART_PATHS), _leaf), min_size=1, max_size=3))
def test_mutated_quickstart_never_crashes(mutations: list[tuple[tuple[Any, ...], Any]]) -> None:
    doc = copy.deepcopy(QUICKSTART)
    for path, value in mutations:
        node = doc
        for part in path[:-1]:
            if not isinstance(node, dict | list):
                break
            try:
                node = node[part]
            except (KeyError, IndexError, TypeError):
                break
        else:
            if isinstance(node, dict | list):
                try:
                    node[path[-1]] = value
                except (IndexError, TypeError):
                    pass
    try:
        validate_mapping(doc, "fuzz.yaml")
    except SpecError as exc:
        lines = str(exc).splitlines()
        assert lines and all(line.startswith("fuzz.yaml: ") for line in lines)


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_never_crashes(text: str) -> None:
    try:
        validate_text(text, "fuzz.yaml")
    except SpecError as exc:
        assert all(line.startswith("fuzz.yaml: ") for line in str(exc).splitlines())


def test_a_live_object_with_server_fields_and_status_validates() -> None:
    doc = minimal()
    doc["metadata"].update(uid="0b7c", resourceVersion="42", generation=3, namespace="lab")
    doc["status"] = {
        "phase": "TrainingPolicy",
        "observedGeneration": 3,
        "step": 5,
        "proxyReward": 6.5,
        "goldReward": 4.0,
        "hacking": "plain",
        "conditions": [
            {"type": "Ready", "status": "False", "lastTransitionTime": "2025-01-02T03:04:05Z"}
        ],
        "arms": [{"name": "plain", "judge": "plain", "step": 5, "hacking": True}],
        "kopf": {"progress": {}},
    }
    experiment = validate_mapping(doc)
    assert experiment.metadata.namespace == "lab"
    status = experiment.status
    assert status is not None and status.phase == "TrainingPolicy"
    assert status.conditions[0].last_transition_time is not None
    assert status.arms[0].hacking is True
    dumped = status.model_dump(by_alias=True, mode="json", exclude_none=True)
    assert dumped["proxyReward"] == 6.5 and "kopf" not in dumped
