"""The ``external-judge`` arm of a dpo-self-judge study: its spec field and checks, its plan and
services, scoring candidates through a real in-process judge pool server, and a whole round on
the tiny model."""

from __future__ import annotations

import copy
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from judgelab.engines.tiny import tiny_engine as build_tiny
from judgelab.judge_pool.pool import JudgePool
from judgelab.judging import JudgeConfig, PairwiseJudge, PointwiseJudge
from judgelab.phases.stages import Stage, plan_arms, stage_services
from judgelab.selfimprove.arms import run_arm
from judgelab.selfimprove.pool_judge import JudgePoolFailed, PoolJudge
from judgelab.selfimprove.prompts import PromptRow
from judgelab.selfimprove.sampling import Candidates
from judgelab.selfimprove.self_judge import SelfJudge
from judgelab.spec import SpecError, validate_mapping
from judgelab.spec.training import LoraSpec
from tests.unit.judge_pool_support import running
from tests.unit.selfimprove_support import LengthGold, QualityJudgeEngine, closeness

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "self-improve.yaml"
REFEREE = {"name": "referee", "model": {}, "protocol": "pairwise", "reference_guided": True}
ROWS = [PromptRow(f"p{i}", f"Say {i}.", f"{i} it is") for i in range(4)]


def study(judges: list[dict[str, Any]], external: str | None = "referee") -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    spec = doc["spec"]
    spec["data"]["responses"] = {"per_prompt": 2}  # pairwise judges train on two per prompt
    spec["judges"] = copy.deepcopy(judges)
    if external is not None:
        spec["policy"]["algorithm"]["external_judge"] = external
    return doc


def problems(doc: dict[str, Any]) -> str:
    with pytest.raises(SpecError) as caught:
        validate_mapping(doc, "t.yaml")
    return str(caught.value)


def test_external_judge_must_name_a_pairwise_judge_of_the_study() -> None:
    unknown = problems(study([REFEREE], external="nobody"))
    assert "spec.policy.algorithm.external_judge" in unknown
    assert "must name a judge in spec.judges (referee)" in unknown
    pointwise = {"name": "scorer", "model": {}}
    refused = problems(study([pointwise], external="scorer"))
    assert "spec.policy.algorithm.external_judge" in refused
    assert "must name a pairwise judge: 'scorer' is pointwise" in refused
    assert "none defined" in problems(study([], external="referee"))


def test_the_external_arm_is_planned_with_the_judge_pool_only_when_set() -> None:
    spec = validate_mapping(study([REFEREE])).spec
    arms = [(a.name, a.judge) for a in plan_arms(spec)]
    assert arms[:2] == [("self-judge", ""), ("external-judge", "referee")]
    dumped = spec.model_dump(mode="json")
    assert stage_services(dumped, Stage.TRAIN_POLICY) == ("annotator", "judge-pool")
    assert stage_services(dumped, Stage.EVALUATE) == ("annotator",)
    plain = validate_mapping(yaml.safe_load(EXAMPLE.read_text())).spec
    assert "external-judge" not in [a.name for a in plan_arms(plain)]
    assert stage_services(plain.model_dump(mode="json"), Stage.TRAIN_POLICY) == ("annotator",)


def quality_pool(engine: QualityJudgeEngine, reference_guided: bool = True) -> JudgePool:
    pool = JudgePool()
    config = JudgeConfig(
        name="referee", model=engine.name, protocol="pairwise", reference_guided=reference_guided
    )
    pool.add("referee", PairwiseJudge(engine, config), max_batch=64)
    scorer = PointwiseJudge(engine, JudgeConfig(name="scorer", model=engine.name))
    pool.add("scorer", scorer, max_batch=8)
    return pool


def test_candidate_scores_are_the_pools_mean_win_probabilities_over_both_orders() -> None:
    texts = ("short", "exact", "a much longer answer")
    batch = [Candidates(PromptRow(f"p{i}", "question?", "exact"), texts, ("stop",) * 3)
             for i in range(2)]  # fmt: skip
    served = QualityJudgeEngine(closeness, bias=0.4)  # position bias: the two orders differ
    with running(quality_pool(served)) as pool:
        judge = PoolJudge(pool.server.address, "referee", reference_guided=True, experiment="t")
        try:
            judged = judge.score(batch, "external-judge")
        finally:
            judge.close()
    local = SelfJudge.on(QualityJudgeEngine(closeness, bias=0.4), with_reference=True)
    expected = local.score(batch)
    assert sum(served.calls) == 2 * 3 * 2  # 3 pairs per prompt, each shown in both orders
    for got, want in zip(judged, expected, strict=True):
        assert got.scores == pytest.approx(want.scores, abs=1e-6)
        assert max(range(3), key=lambda i: got.scores[i]) == 1  # the reference's match wins
        assert got.comparisons == 6 and got.invalid_comparisons == 0
        for judgement in got.judgements:
            assert [o.order for o in judgement.orders] == ["AB", "BA"]
            ab, ba = (o.p_a_preferred for o in judgement.orders)
            assert ab != pytest.approx(ba)  # the bias shows per order, the mean cancels it
            assert judgement.p_a_preferred == pytest.approx((ab + ba) / 2)
            assert judgement.stamp.judge == "referee"


def test_a_blank_candidate_loses_without_a_pool_call() -> None:
    served = QualityJudgeEngine(closeness)
    batch = [Candidates(ROWS[0], (" ", "good", "0 it is"), ("stop",) * 3)]
    with running(quality_pool(served)) as pool:
        judge = PoolJudge(pool.server.address, "referee", reference_guided=True)
        (judged,) = judge.score(batch, "external-judge")
        judge.close()
    assert sum(served.calls) == 2  # only good vs "0 it is", in both orders
    assert judged.scores[0] == 0.0 and judged.scores[2] > judged.scores[1]


def test_an_unreachable_or_wrong_judge_fails_the_arm_naming_it() -> None:
    batch = [Candidates(ROWS[0], ("a", "b"), ("stop", "stop"))]
    started = time.monotonic()
    judge = PoolJudge("127.0.0.1:9", "referee", reference_guided=True, timeout_s=5)
    at = r"judge 'referee' of the judge pool at 127\.0\.0\.1:9"
    with pytest.raises(JudgePoolFailed, match=at):
        judge.score(batch, "external-judge")
    judge.close()
    assert time.monotonic() - started < 15
    with running(quality_pool(QualityJudgeEngine(closeness))) as pool:
        for name in ("missing", "scorer"):  # not served; served but pointwise
            wrong = PoolJudge(pool.server.address, name, reference_guided=False)
            with pytest.raises(JudgePoolFailed, match=f"judge '{name}' of the judge pool"):
                wrong.score(batch, "external-judge")
            wrong.close()


def test_the_external_arm_runs_a_round_end_to_end_through_a_judge_pool_server(
    tmp_path: Path,
) -> None:
    doc = study([REFEREE])
    algorithm = doc["spec"]["policy"]["algorithm"]
    algorithm.update(rounds=1, num_candidates=3, batch_size=2, learning_rate=5e-3)
    doc["spec"]["policy"]["generation"]["max_new_tokens"] = 6
    experiment = validate_mapping(doc)
    lora = LoraSpec(r=4, alpha=8, target_modules=["q_proj", "v_proj"])
    experiment.spec.policy.lora = lora
    served = QualityJudgeEngine(closeness)
    with running(quality_pool(served)) as pool:
        summary = run_arm(
            experiment, "external-judge", build_tiny(), ROWS[:2], ROWS[2:], tmp_path,
            LengthGold(), judge_pool_address=pool.server.address,
        )  # fmt: skip
    training = summary["training"]
    assert training["kind"] == "external-judge-dpo" and training["judge"] == "referee"
    (round_one,) = training["rounds"]
    assert round_one["judge"] == "referee" and round_one["with_reference"] is True
    assert round_one["comparisons"] == 2 * 3 * 2 == sum(served.calls)
    assert round_one["pairs"] + round_one["ties"] == 2
    assert (tmp_path / "round-1" / "adapter" / "adapter_config.json").is_file()
    record = json.loads((tmp_path / "gold_win_rate.json").read_text())
    assert record["arm"] == "external-judge" and record["prompts"] == 2
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    with pytest.raises(ValueError, match="no judge-pool address"):
        run_arm(experiment, "external-judge", build_tiny(), ROWS[:2], ROWS[2:],
                tmp_path / "again", None)  # fmt: skip


@pytest.mark.parametrize(("arm", "address"), [("external-judge", "pool:1"), ("self-judge", None)])
def test_train_policy_hands_the_judge_pool_address_to_the_external_arm_only(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, arm: str, address: str | None
) -> None:
    from judgelab.runtime import train_self_improve as unit

    seen: dict[str, Any] = {}

    class Gold:
        def __init__(self, at: str, experiment: str) -> None:
            seen["gold"] = at

        def close(self) -> None:
            """Nothing to release."""

    def fake_arm(*args: Any, **kwargs: Any) -> dict[str, Any]:
        seen["pool"] = kwargs["judge_pool_address"]
        return {"training": {"rounds": []}}

    monkeypatch.setattr(unit, "load_policy_rows", lambda run, experiment: ([], []))
    monkeypatch.setattr(unit, "build_engine", lambda model: build_tiny())
    monkeypatch.setattr(unit, "GrpcGold", Gold)
    monkeypatch.setattr(unit, "run_arm", fake_arm)
    addresses = {"annotator": "gold:1", "judge-pool": "pool:1"}

    class Context:
        experiment = validate_mapping(study([REFEREE]))
        run_dir = tmp_path
        cancelled = threading.Event()

        def address(self, service: str) -> str:
            return addresses[service]

        def report(self, *_: Any) -> None:
            """Not watched here."""

        def update_arm(self, progress: Any) -> None:
            seen["arm"] = progress.name

    class Unit:
        name = arm

    unit.run_train_self_improve(Context(), Unit())  # type: ignore[arg-type]
    assert seen == {"gold": "gold:1", "pool": address, "arm": arm}
