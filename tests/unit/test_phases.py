"""The phase machine: plans, transitions, retries, resume, spec changes, the status it writes."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_crd import _violations

from judgelab import phases
from judgelab.crd import openapi_schema
from judgelab.phases import ArmProgress, PhaseState, RetryPolicy, Stage
from judgelab.phases.stages import stage_services
from judgelab.spec import ExperimentSpec, validate_mapping
from judgelab.spec.status import ExperimentStatus

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 1, 1, tzinfo=UTC)
ALL_SERVICES = phases.SERVICES


def _raw(name: str = "quickstart.yaml") -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "examples" / name).read_text(encoding="utf-8"))
    return loaded


def _spec(raw: dict[str, Any] | None = None) -> ExperimentSpec:
    return validate_mapping(raw if raw is not None else _raw()).spec


def _dpo_raw() -> dict[str, Any]:
    raw = _raw()
    raw["spec"]["judges"] = []
    raw["spec"]["evaluation"] = {"heldout_prompts": 8}
    raw["spec"]["policy"]["algorithm"] = {"name": "dpo-self-judge", "rounds": 1}
    return raw


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _ready(state: PhaseState, now: datetime = T0) -> PhaseState:
    for service in ALL_SERVICES:
        state = phases.set_service(state, service, True, now)
    return state


def _run_stage(state: PhaseState, now: datetime = T0) -> PhaseState:
    """Launch and finish every runnable unit of the current stage."""
    stage = state.current
    for unit_stage, name in phases.runnable(state, now):
        state = phases.launch(state, unit_stage, name, now)
    for unit_stage, name in [(stage, n) for n in state.units[stage]] if stage else []:
        state = phases.succeed(state, unit_stage, name, now)
    return state


def _status_violations(state: PhaseState) -> list[str]:
    schema = openapi_schema()["properties"]["status"]
    return _violations(schema, phases.status_dict(state), ".status")


# --- plans -------------------------------------------------------------------------------------


def test_quickstart_plan_has_four_stages_with_one_arm_per_judge() -> None:
    units = phases.plan_units(_spec())
    assert units == {
        Stage.ANNOTATE: ("gold",),
        Stage.TRAIN_JUDGES: ("plain", "reasoning"),
        Stage.TRAIN_POLICY: ("plain", "reasoning"),
        Stage.EVALUATE: ("report",),
    }
    assert [(a.name, a.judge) for a in phases.plan_arms(_spec())] == [
        ("plain", "plain"),
        ("reasoning", "reasoning"),
    ]


def test_self_judging_study_annotates_splits_only_and_skips_judge_training() -> None:
    spec = _spec(_dpo_raw())
    assert phases.plan_units(spec)[Stage.ANNOTATE] == ("splits",)
    state = phases.start(spec, T0)
    assert state.current is Stage.ANNOTATE and state.phase == "Annotating"
    assert set(state.units[Stage.TRAIN_POLICY]) == {
        "self-judge",
        "sft-on-references",
        "reference-free",
    }
    # In-process training: the gold annotator is the only service any stage waits for.
    assert {stage_services(state.spec, stage) for stage in Stage} == {("annotator",)}
    state = phases.set_service(state, "annotator", True, T0)
    state = _run_stage(state)
    assert state.current is Stage.TRAIN_POLICY and state.phase == "TrainingPolicy"
    assert len(phases.runnable(state, T0)) == 3
    condition = state.condition("JudgesTrained")
    assert condition is not None and (condition.status, condition.reason) == ("True", "NotNeeded")
    assert [r.reason for r in state.log].count("StageSkipped") == 1


# --- a whole study -----------------------------------------------------------------------------


def test_a_study_runs_through_every_phase_in_order() -> None:
    state = phases.start(_spec(), T0, generation=1)
    assert state.phase == "Annotating"
    phases_seen = [state.phase]
    state = _ready(state)
    while not state.terminal:
        state = _run_stage(state)
        phases_seen.append(state.phase)
    assert phases_seen == [
        "Annotating",
        "TrainingJudges",
        "TrainingPolicy",
        "Evaluating",
        "Succeeded",
    ]
    ready = state.condition(phases.READY)
    assert ready is not None and (ready.status, ready.reason) == ("True", "Succeeded")
    for type_ in ("Annotated", "JudgesTrained", "PolicyTrained", "Evaluated"):
        condition = state.condition(type_)
        assert condition is not None and condition.status == "True", type_
    launched = [(r.stage, r.unit) for r in state.log if r.reason == "UnitLaunched"]
    assert len(launched) == len(set(launched)) == 6


def test_units_wait_for_the_services_their_stage_needs() -> None:
    state = phases.start(_spec(), T0)
    assert phases.runnable(state, T0) == []
    services = state.condition(phases.SERVICES_READY)
    assert services is not None and services.status == "False"
    assert "annotator" in services.message
    state = phases.set_service(state, "annotator", True, T0)
    assert phases.runnable(state, T0) == [(Stage.ANNOTATE, "gold")]
    state = _run_stage(state)
    assert state.phase == "TrainingJudges"
    assert len(phases.runnable(state, T0)) == 2, "judge training needs no service"
    state = _run_stage(state)
    assert state.phase == "TrainingPolicy"
    assert phases.runnable(state, T0) == [], "judge pool and rollout are not ready"
    state = phases.set_service(state, "judge-pool", True, T0)
    state = phases.set_service(state, "rollout", True, T0)
    assert [u for _, u in phases.runnable(state, T0)] == ["plain", "reasoning"]


def test_transitions_on_units_that_are_not_running_change_nothing() -> None:
    state = _ready(phases.start(_spec(), T0))
    assert phases.succeed(state, Stage.ANNOTATE, "gold", T0) is state
    state = phases.launch(state, Stage.ANNOTATE, "gold", T0)
    assert phases.launch(state, Stage.ANNOTATE, "gold", T0) is state
    done = phases.succeed(state, Stage.ANNOTATE, "gold", T0)
    assert phases.succeed(done, Stage.ANNOTATE, "gold", T0) is done
    assert phases.fail_unit(done, Stage.ANNOTATE, "gold", "x", T0, RetryPolicy()) is done


# --- retries -----------------------------------------------------------------------------------


def test_retry_policy_backs_off_exponentially_up_to_a_cap() -> None:
    policy = RetryPolicy(max_attempts=5, initial_delay_s=10, multiplier=2, max_delay_s=30)
    assert [policy.delay_s(n) for n in (1, 2, 3, 4)] == [10, 20, 30, 30]
    assert policy.allows_retry(4) and not policy.allows_retry(5)
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


def test_a_failed_unit_is_retried_after_its_back_off_then_the_study_fails() -> None:
    policy = RetryPolicy(max_attempts=2, initial_delay_s=30)
    state = _ready(phases.start(_spec(), T0))
    state = phases.launch(state, Stage.ANNOTATE, "gold", T0)
    state = phases.fail_unit(state, Stage.ANNOTATE, "gold", "OOMKilled", T0, policy)
    unit = state.unit(Stage.ANNOTATE, "gold")
    assert (unit.status, unit.failures, unit.retry_at) == ("retrying", 1, _at(30))
    assert phases.next_retry(state) == _at(30)
    assert phases.runnable(state, _at(29)) == []
    assert phases.runnable(state, _at(30)) == [(Stage.ANNOTATE, "gold")]
    annotated = state.condition("Annotated")
    assert annotated is not None and annotated.reason == "Retrying"
    assert "OOMKilled" in annotated.message and "retry 2 of 2" in annotated.message

    state = phases.launch(state, Stage.ANNOTATE, "gold", _at(30))
    assert state.unit(Stage.ANNOTATE, "gold").attempts == 2
    state = phases.fail_unit(state, Stage.ANNOTATE, "gold", "OOMKilled again", _at(40), policy)
    assert state.phase == "Failed"
    ready = state.condition(phases.READY)
    assert ready is not None and (ready.status, ready.reason) == ("False", "AttemptsExhausted")
    assert "annotate/gold failed 2 of 2 attempts; last: OOMKilled again" in ready.message
    assert phases.runnable(state, _at(1000)) == []
    assert state.log[-1].reason == "StudyFailed" and state.log[-1].warning


def test_fail_marks_the_current_stage_and_ready_with_the_reason() -> None:
    state = phases.fail(phases.start(_spec(), T0), "ReleaseFailed", "helm: boom", T0)
    assert (state.phase, state.message) == ("Failed", "helm: boom")
    annotated = state.condition("Annotated")
    assert annotated is not None and annotated.reason == "ReleaseFailed"
    assert phases.fail(state, "Other", "x", T0) is state


# --- persistence and resume --------------------------------------------------------------------


def test_state_round_trips_through_json() -> None:
    policy = RetryPolicy(initial_delay_s=5)
    state = _ready(phases.start(_spec(), T0, generation=3))
    state = phases.launch(state, Stage.ANNOTATE, "gold", T0)
    state = phases.fail_unit(state, Stage.ANNOTATE, "gold", "boom", T0, policy)
    state = phases.update_arm(state, ArmProgress("plain", "plain", 4, 0.5, 0.25, 0.1, True))
    text = json.dumps(state.to_dict())
    assert PhaseState.from_dict(json.loads(text)) == state
    with pytest.raises(ValueError, match="version"):
        PhaseState.from_dict({**state.to_dict(), "version": 99})


def test_resume_reruns_only_interrupted_work_never_finished_work() -> None:
    state = _ready(phases.start(_spec(), T0))
    state = _run_stage(_run_stage(state))
    assert state.phase == "TrainingPolicy"
    state = phases.launch(state, Stage.TRAIN_POLICY, "plain", T0)
    state = phases.launch(state, Stage.TRAIN_POLICY, "reasoning", T0)
    state = phases.succeed(state, Stage.TRAIN_POLICY, "plain", T0)

    resumed = phases.interrupt(PhaseState.from_dict(state.to_dict()), _at(60))
    assert resumed.unit(Stage.TRAIN_POLICY, "reasoning").status == "pending"
    assert phases.runnable(resumed, _at(60)) == [(Stage.TRAIN_POLICY, "reasoning")]
    resumed = _run_stage(_run_stage(resumed, _at(60)), _at(60))
    assert resumed.phase == "Succeeded"
    assert resumed.launched(Stage.ANNOTATE, "gold") == 1
    assert resumed.launched(Stage.TRAIN_JUDGES, "plain") == 1
    assert resumed.launched(Stage.TRAIN_POLICY, "plain") == 1
    assert resumed.launched(Stage.TRAIN_POLICY, "reasoning") == 2
    assert any(r.reason == "UnitInterrupted" for r in resumed.log)


# --- spec changes ------------------------------------------------------------------------------


def _changed(mutate: Any, base: dict[str, Any] | None = None) -> ExperimentSpec:
    raw = copy.deepcopy(base) if base is not None else _raw()
    mutate(raw["spec"])
    return _spec(raw)


def test_changed_paths_name_the_leaves() -> None:
    old = {"a": {"b": 1, "c": [1, 2]}, "d": [1]}
    new = {"a": {"b": 2, "c": [1, 3]}, "d": [1, 2], "e": 0}
    assert phases.changed_paths(old, new) == ["a.b", "a.c[1]", "d", "e"]


def test_replicas_can_change_at_any_time() -> None:
    state = _run_stage(_ready(phases.start(_spec(), T0)))
    spec = _changed(lambda s: s.setdefault("resources", {}).update({"rollout": {"replicas": 3}}))
    review = phases.review_spec(state, spec)
    assert review.accepted and review.changed == ("resources.rollout.replicas",)
    state = phases.accept_spec(state, spec, 2, T0)
    assert state.spec["resources"]["rollout"]["replicas"] == 3
    assert state.observed_generation == 2
    accepted = state.condition(phases.SPEC_ACCEPTED)
    assert accepted is not None and accepted.status == "True"


def test_the_learner_shape_is_frozen_once_training_started() -> None:
    """Training Jobs stay rendered and their pod templates are immutable."""
    learner = {"learner": {"replicas": 2, "cpu": "4"}}
    state = _ready(phases.start(_spec(), T0))
    before = _changed(lambda s: s.setdefault("resources", {}).update(learner))
    assert phases.review_spec(state, before).accepted, "no training Job exists yet"

    state = phases.launch(_run_stage(state), Stage.TRAIN_JUDGES, "plain", T0)
    review = phases.review_spec(state, before)
    assert not review.accepted
    frozen = {(c.path, c.stage) for c in review.frozen}
    assert frozen == {
        ("resources.learner.replicas", Stage.TRAIN_JUDGES),
        ("resources.learner.cpu", Stage.TRAIN_JUDGES),
    }


def test_a_finished_phases_inputs_are_frozen() -> None:
    state = _run_stage(_ready(phases.start(_spec(), T0)))
    assert state.phase == "TrainingJudges"
    spec = _changed(lambda s: s["gold"].update({"temperature": 0.5}))
    review = phases.review_spec(state, spec)
    assert not review.accepted
    assert [(c.path, c.stage) for c in review.frozen] == [("gold.temperature", Stage.ANNOTATE)]
    assert "spec.gold.temperature is an input of Annotating" in review.message()
    with pytest.raises(ValueError, match="gold.temperature"):
        phases.accept_spec(state, spec, 2, T0)
    refused = phases.refuse_spec(state, "FrozenFieldChanged", review.message(), 2, _at(5))
    assert refused.spec == state.spec and refused.observed_generation == 2
    condition = refused.condition(phases.SPEC_ACCEPTED)
    assert condition is not None
    assert (condition.status, condition.reason, condition.since) == (
        "False",
        "FrozenFieldChanged",
        _at(5),
    )
    assert condition.generation == 2


def test_inputs_of_stages_ahead_can_still_change_and_replan() -> None:
    state = _ready(phases.start(_spec(), T0))
    state = phases.launch(state, Stage.ANNOTATE, "gold", T0)

    three = _raw()
    three["spec"]["judges"].append({**copy.deepcopy(three["spec"]["judges"][0]), "name": "third"})
    spec = _spec(three)
    assert phases.review_spec(state, spec).accepted
    state = phases.accept_spec(state, spec, 2, T0)
    assert set(state.units[Stage.TRAIN_JUDGES]) == {"plain", "reasoning", "third"}
    assert [a.name for a in state.arms] == ["plain", "reasoning", "third"]

    later = _run_stage(_run_stage(state))
    later = phases.launch(later, Stage.TRAIN_POLICY, "plain", T0)
    evaluation_only = _changed(
        lambda s: s["evaluation"].update({"cross_judge_matrix": False}), three
    )
    assert phases.review_spec(later, evaluation_only).frozen == ()
    steps = _changed(lambda s: s["evaluation"].update({"every_n_steps": 2}), three)
    assert [c.stage for c in phases.review_spec(later, steps).frozen] == [Stage.TRAIN_POLICY]


# --- status ------------------------------------------------------------------------------------


def test_status_fits_the_crd_status_schema_in_every_kind_of_state() -> None:
    policy = RetryPolicy(max_attempts=1)
    fresh = phases.start(_spec(), T0, generation=1)
    running = _run_stage(_run_stage(_ready(fresh)))
    running = phases.update_arm(running, ArmProgress("plain", "plain", 3, 0.7, 0.4, 0.02, True))
    failed = phases.fail_unit(
        phases.launch(running, Stage.TRAIN_POLICY, "plain", T0),
        Stage.TRAIN_POLICY,
        "plain",
        "boom",
        T0,
        policy,
    )
    rejected = phases.rejected(["spec.arms[0].judge: must name a judge"], T0, 1)
    done = _run_stage(_run_stage(running))
    for state in (fresh, running, failed, rejected, done):
        status = phases.status_dict(state)
        assert _status_violations(state) == [], state.phase
        assert ExperimentStatus.model_validate(status).phase == state.phase
        types = [c["type"] for c in status["conditions"]]
        assert len(types) == len(set(types)), "one condition per type"


def test_status_printer_columns_summarise_the_arms() -> None:
    state = phases.start(_spec(), T0, generation=4)
    state = phases.update_arm(state, ArmProgress("plain", "plain", 6, 0.8, 0.2, 0.1, True))
    state = phases.update_arm(state, ArmProgress("reasoning", "reasoning", 4, 0.4, 0.4, 0.05))
    status = phases.status_dict(state)
    assert status["step"] == 4, "the slowest arm"
    assert status["proxyReward"] == pytest.approx(0.6)
    assert status["goldReward"] == pytest.approx(0.3)
    assert status["hacking"] == "plain"
    assert status["observedGeneration"] == 4
    assert status["arms"][0] == {
        "name": "plain",
        "judge": "plain",
        "step": 6,
        "proxyReward": 0.8,
        "goldReward": 0.2,
        "kl": 0.1,
        "hacking": True,
    }
    assert status["conditions"][0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"


def test_a_condition_keeps_its_transition_time_until_its_status_flips() -> None:
    state = phases.start(_spec(), T0)
    state = phases.set_condition(state, "ReleaseReady", "False", "Installing", "a", _at(1))
    state = phases.set_condition(state, "ReleaseReady", "False", "Retrying", "b", _at(2))
    condition = state.condition("ReleaseReady")
    assert condition is not None and (condition.since, condition.reason) == (_at(1), "Retrying")
    state = phases.set_condition(state, "ReleaseReady", "True", "Installed", "c", _at(3))
    condition = state.condition("ReleaseReady")
    assert condition is not None and condition.since == _at(3)


def test_a_rejected_spec_fails_at_once_with_the_problems() -> None:
    state = phases.rejected(["spec.arms[0].judge: must name a judge in spec.judges"], T0, 1)
    assert state.phase == "Failed" and state.terminal
    accepted = state.condition(phases.SPEC_ACCEPTED)
    assert accepted is not None and (accepted.status, accepted.reason) == ("False", "InvalidSpec")
    assert "spec.arms[0].judge" in accepted.message
