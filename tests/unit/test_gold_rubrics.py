"""Gold-written per-prompt rubrics: spec, cleaning the gold reply, Annotate writing them once,
and the judge seeing each prompt's own rubric (training, evaluation, the wire)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from judgelab.engines.constant import ConstantEngine
from judgelab.engines.transformers_engine import TransformersEngine
from judgelab.judging import JudgeConfig, PairwiseJudge, PointwiseJudge, Sample
from judgelab.judging.rubrics import MAX_CRITERIA, parse_rubric, writer_conversation
from judgelab.judging.samples import Pair
from judgelab.judging.templates import load_template
from judgelab.queues.messages import PromptMessage, RolloutGroup
from judgelab.serving.convert import samples_from_proto
from judgelab.spec import Experiment, SpecError, validate_mapping
from judgelab.units.annotate import run_annotate
from judgelab.units.gold_grpc import sample_to_proto
from judgelab.units.gold_rows import GoldRow, MissingRubrics
from judgelab.units.judge_sft import build_examples

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart.yaml"
SPLITS = {"judge_train": 4, "judge_eval": 2, "policy_train": 2, "policy_eval": 1}
GOLD_REPLY = "<think>The user asks about X.</think>\n1. States the fact.\n2) Explains why.\nBye"


def experiment(**judge: Any) -> Experiment:
    spec = yaml.safe_load(QUICKSTART.read_text())
    spec["spec"]["data"]["splits"] = SPLITS
    spec["spec"]["data"]["responses"].update({"max_new_tokens": 6, "per_prompt": 1})
    spec["spec"]["evaluation"]["heldout_prompts"] = 1
    spec["spec"]["judges"][0].update(judge)
    return validate_mapping(spec, str(QUICKSTART))


def quiet(_done: int, _total: int, _note: str) -> None:
    pass


# -- spec -----------------------------------------------------------------------------


def test_spec_asks_for_gold_rubrics_and_rejects_bad_values() -> None:
    judge = experiment(rubric=True, rubric_source="gold").spec.judges[0]
    assert JudgeConfig.from_proxy_spec(judge).gold_rubric
    assert experiment().spec.judges[0].rubric_source == "fixed"  # old files keep their meaning
    with pytest.raises(SpecError, match=r"rubric_source.*needs rubric: true"):
        experiment(rubric_source="gold")
    with pytest.raises(SpecError, match=r"rubric_source.*'fixed' or 'gold'"):
        experiment(rubric=True, rubric_source="judge")


def test_gold_rubric_changes_the_config_hash_and_nothing_else_does() -> None:
    def stamp(**kw: Any) -> str:
        config = JudgeConfig(name="j", model="m", **kw)
        return PointwiseJudge(ConstantEngine(), config).prompt.stamp.config_hash

    fixed, gold, plain = stamp(rubric=True), stamp(rubric=True, rubric_source="gold"), stamp()
    assert len({fixed, gold, plain}) == 3
    assert stamp(rubric=True, rubric_source="fixed") == fixed


# -- the gold reply, cleaned ----------------------------------------------------------


def test_reasoning_and_chatter_are_dropped_and_items_renumbered() -> None:
    written = parse_rubric(GOLD_REPLY)
    assert written.valid and written.criteria == 2
    assert written.text == "1. States the fact.\n2. Explains why."


@pytest.mark.parametrize(
    ("reply", "finish", "problem"),
    [
        ("", "stop", "empty_output"),
        ("   \n", "stop", "empty_output"),
        ("A fine answer with no list.", "stop", "no_criteria"),
        ("1. <criterion>\n2. <criterion>", "stop", "no_criteria"),
        ("<think>still thinking about", "length", "unfinished_reasoning"),
        ("1. only one, cut sh", "length", "no_criteria"),
    ],
)
def test_unusable_replies_are_invalid_values_not_errors(
    reply: str, finish: str, problem: str
) -> None:
    written = parse_rubric(reply, finish)
    assert not written.valid and written.problem == problem and written.text == ""


def test_length_is_capped_and_a_cut_last_item_dropped() -> None:
    many = "\n".join(f"{k}. criterion {k} " + "x" * 400 for k in range(1, 20))
    written = parse_rubric(many)
    assert written.criteria <= MAX_CRITERIA and len(written.text) <= 1500
    assert all(len(line) <= 304 for line in written.text.splitlines())
    assert parse_rubric("1. a\n2. b\n3. c", "length").text == "1. a\n2. b"


def test_the_writer_sees_the_reference_only_when_there_is_one() -> None:
    with_ref, conversation = writer_conversation("Capital of France?", "Paris.")
    assert with_ref.id == "rubric-writer-ref-v1" and "Paris." in conversation[1].content
    plain, conversation = writer_conversation("Capital of France?", None)
    assert plain.id == "rubric-writer-v1" and "Reference" not in conversation[1].content


# -- the judge sees its prompt's rubric -------------------------------------------------


def gold_judge(engine: Any, protocol: str = "pointwise") -> PointwiseJudge | PairwiseJudge:
    config = JudgeConfig(
        name="rubric-judge", model="m", protocol=protocol, rubric=True, rubric_source="gold"
    )
    return (PointwiseJudge if protocol == "pointwise" else PairwiseJudge)(engine, config)


def test_each_item_gets_its_own_rubric_and_a_missing_one_is_named() -> None:
    judge = gold_judge(ConstantEngine())
    assert isinstance(judge, PointwiseJudge)
    text = judge.conversation(Sample("s1", "Q?", "A.", rubric="1. Mentions zebras."))[1].content
    assert "Criteria written for this request" in text and "1. Mentions zebras." in text
    assert "Criteria, most important first" not in text  # not the fixed rubric
    with pytest.raises(ValueError, match="'s2'.*needs the gold judge's rubric"):
        judge.conversation(Sample("s2", "Q?", "A."))
    pairwise = gold_judge(ConstantEngine(), "pairwise")
    assert isinstance(pairwise, PairwiseJudge)
    shown = pairwise.conversation(Pair("p", "Q?", "A", "B", rubric="1. Zebras."), "BA")
    assert "1. Zebras." in shown[1].content


def test_training_examples_carry_the_rubric_and_rows_without_one_fail_by_id(
    tiny_engine: TransformersEngine,
) -> None:
    def row(k: int, rubric: str | None) -> GoldRow:
        return GoldRow(f"r{k}", "Q?", "A.", None, 7, "", True, rubric=rubric)

    judge = gold_judge(tiny_engine)
    assert isinstance(judge, PointwiseJudge)
    tokenizer = tiny_engine.tokenizer
    (example,) = build_examples(judge, tokenizer, [row(0, "1. Zebra check.")], 4096).examples
    assert "1. Zebra check." in tokenizer.decode(example.input_ids)
    with pytest.raises(MissingRubrics, match=r"2 of 3 rows.*r1, r2; rerun the Annotate"):
        build_examples(judge, tokenizer, [row(0, "1. x"), row(1, None), row(2, " ")], 4096)


def test_the_rubric_travels_on_the_stream_and_over_grpc() -> None:
    message = PromptMessage("arm:step1:p", "Q?", reference="R", arm="arm", rubric="1. x")
    assert PromptMessage.from_fields(message.to_fields()).rubric == "1. x"
    group = RolloutGroup("g", "arm", "j", "p", "Q?", None, 0, [], rubric="1. y")
    assert RolloutGroup.from_fields(group.to_fields()).rubric == "1. y"
    assert PromptMessage.from_fields(PromptMessage("p", "Q?").to_fields()).rubric is None
    (sample,) = samples_from_proto([sample_to_proto(Sample("s", "Q?", "A.", rubric="1. z"))])
    assert sample.rubric == "1. z"


# -- Annotate writes them once ------------------------------------------------------------


def test_annotate_writes_one_rubric_per_prompt_once_and_every_row_carries_it(
    tmp_path: Path,
) -> None:
    exp = experiment(rubric=True, rubric_source="gold")
    writer = ConstantEngine(text=GOLD_REPLY)
    gold, policy = ConstantEngine(), ConstantEngine(text="An answer.")
    from judgelab.annotator.cache import MemoryCache
    from judgelab.annotator.core import GoldAnnotatorCore

    core = GoldAnnotatorCore(
        PointwiseJudge(gold, JudgeConfig.from_gold_spec(exp.spec.gold)), cache=MemoryCache()
    )
    summary = run_annotate(
        exp, tmp_path, annotator=core, policy_engine=policy, rubric_engine=writer, progress=quiet
    )
    out = tmp_path / "annotate"
    rubrics = [json.loads(line) for line in (out / "rubrics.jsonl").read_text().splitlines()]
    assert len(rubrics) == sum(SPLITS.values()) == len({r["prompt_id"] for r in rubrics})
    template = load_template(rubrics[0]["template_id"])
    assert all(r["template_hash"] == template.sha256 and r["valid"] for r in rubrics)
    for split in SPLITS:
        for line in (out / f"{split}.jsonl").read_text().splitlines():
            row = json.loads(line)
            assert row["rubric"] == "1. States the fact.\n2. Explains why."
            assert row["rubric_fallback"] is False
    assert summary.rubrics == {"written": 9, "reused": 0, "fallback": 0, "fallback_reasons": {}}
    calls = writer.calls
    again = run_annotate(
        exp, tmp_path, annotator=core, policy_engine=policy, rubric_engine=writer, progress=quiet
    )
    assert writer.calls == calls and again.rubrics is not None and again.rubrics["reused"] == 9
    core.close()


def test_an_unusable_gold_rubric_falls_back_to_the_fixed_criteria_and_is_counted(
    tmp_path: Path,
) -> None:
    exp = experiment(rubric=True, rubric_source="gold")
    from judgelab.annotator.cache import MemoryCache
    from judgelab.annotator.core import GoldAnnotatorCore

    core = GoldAnnotatorCore(
        PointwiseJudge(ConstantEngine(), JudgeConfig.from_gold_spec(exp.spec.gold)),
        cache=MemoryCache(),
    )
    summary = run_annotate(
        exp,
        tmp_path,
        annotator=core,
        policy_engine=ConstantEngine(text="An answer."),
        rubric_engine=ConstantEngine(text="I would rather not."),
        progress=quiet,
    )
    core.close()
    assert summary.rubrics is not None and summary.rubrics["fallback"] == 9
    assert summary.rubrics["fallback_reasons"] == {"no_criteria": 9}
    row = json.loads((tmp_path / "annotate" / "policy_eval.jsonl").read_text().splitlines()[0])
    assert row["rubric_fallback"] is True and row["rubric"].startswith("Criteria, most important")
