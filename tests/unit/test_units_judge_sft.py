"""SFT of proxy judges on the tiny model: exact targets, skipped rows, learning, unit files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml

from judgelab.engines.adapters import apply_adapter
from judgelab.engines.chat import render_prompt
from judgelab.judging import JudgeConfig, PointwiseJudge, Scale
from judgelab.judging.parsing import parse_score
from judgelab.spec import Experiment, validate_mapping
from judgelab.spec.training import LoraSpec, SftSpec
from judgelab.units.gold_rows import GoldRow, read_gold_rows, sample_of
from judgelab.units.judge_sft import IGNORE, build_examples, encode, train_sft
from judgelab.units.judge_training import run_train_judge

if TYPE_CHECKING:
    from judgelab.engines.transformers_engine import TransformersEngine

QUICKSTART = Path(__file__).parents[2] / "examples" / "quickstart.yaml"


def gold_rows(count: int = 8) -> list[GoldRow]:
    """Gold 8 for a polite answer, 1 for a curt one: a rule the tiny model can pick up."""
    rows = []
    for i in range(count):
        good = i % 2 == 0
        response = f"Thank you, here is the answer {i}." if good else f"no {i}"
        reasoning = "The response answers politely." if good else "The response is curt."
        rows.append(
            GoldRow(f"r{i}", f"Question {i}?", response, None, 8 if good else 1, reasoning, True)
        )
    return rows


def plain_config(**overrides: object) -> JudgeConfig:
    return JudgeConfig(name="plain", model="tiny", **overrides)  # type: ignore[arg-type]


def test_non_reasoning_target_is_exactly_the_score_tokens(tiny_engine: TransformersEngine) -> None:
    judge = PointwiseJudge(tiny_engine, plain_config())
    built = build_examples(judge, tiny_engine.tokenizer, gold_rows(4), max_length=4096)
    assert len(built.examples) == 4 and not built.skipped
    for example, row in zip(built.examples, gold_rows(4), strict=True):
        prompt = render_prompt(tiny_engine.tokenizer, judge.conversation(sample_of(row)), "Score: ")
        prompt_ids = encode(tiny_engine.tokenizer, prompt)
        # The whole judge prompt (prefill included) is context; only the score digit is a target.
        assert example.input_ids[: len(prompt_ids)] == prompt_ids
        assert example.labels[: len(prompt_ids)] == [IGNORE] * len(prompt_ids)
        assert example.target_ids == encode(tiny_engine.tokenizer, str(row.score))
        assert len(example.input_ids) == len(prompt_ids) + 1


def test_multi_token_scale_target_is_the_scored_candidate(tiny_engine: TransformersEngine) -> None:
    judge = PointwiseJudge(tiny_engine, plain_config(scale=Scale(0, 10)))
    row = GoldRow("a", "Q?", "A.", None, 10, "", True)
    (example,) = build_examples(judge, tiny_engine.tokenizer, [row], 4096).examples
    assert tiny_engine.tokenizer.decode(example.target_ids) == "10/"


def test_reasoning_target_is_budgeted_reasoning_then_score_line(
    tiny_engine: TransformersEngine,
) -> None:
    config = plain_config(reasoning=True, reasoning_budget=16)
    judge = PointwiseJudge(tiny_engine, config)
    long_reasoning = "The response is correct but terse. " * 10
    row = GoldRow("a", "Q?", "A.", None, 6, long_reasoning, True)
    (example,) = build_examples(judge, tiny_engine.tokenizer, [row], 4096).examples
    assert example.target_ids[-1] == tiny_engine.tokenizer.eos_token_id
    text = tiny_engine.tokenizer.decode(example.target_ids[:-1])
    parsed = parse_score(text, config.scale, "stop")
    assert parsed.verdict == "6"
    assert len(encode(tiny_engine.tokenizer, parsed.reasoning)) <= 16
    assert long_reasoning.startswith(parsed.reasoning)


def test_invalid_gold_rows_are_skipped_and_counted(tiny_engine: TransformersEngine) -> None:
    judge = PointwiseJudge(tiny_engine, plain_config())
    rows = [
        *gold_rows(2),
        GoldRow("bad1", "Q?", "A.", None, None, "", False, "unparseable"),
        GoldRow("bad2", "Q?", "A.", None, None, "", False, "truncated"),
        GoldRow("none", "Q?", "A.", None, None, "", True),
        GoldRow("off", "Q?", "A.", None, 12, "", True),
    ]
    built = build_examples(judge, tiny_engine.tokenizer, rows, 4096)
    assert [e.id for e in built.examples] == ["r0", "r1"]
    assert built.skipped_by_reason == {
        "gold_invalid:unparseable": 1,
        "gold_invalid:truncated": 1,
        "gold_score_missing": 1,
        "gold_score_off_scale": 1,
    }


def test_long_prompts_are_cut_from_the_left_keeping_the_target(
    tiny_engine: TransformersEngine,
) -> None:
    judge = PointwiseJudge(tiny_engine, plain_config())
    (example,) = build_examples(judge, tiny_engine.tokenizer, gold_rows(1), 64).examples
    assert len(example.input_ids) == 64 and example.prompt_truncated
    assert example.target_ids == encode(tiny_engine.tokenizer, "8")


def test_sft_lowers_the_loss_and_moves_scores_towards_gold(
    tiny_engine: TransformersEngine, tmp_path: Path
) -> None:
    import copy

    from judgelab.engines.transformers_engine import TransformersEngine

    config = plain_config()
    rows = gold_rows(8)
    samples = [sample_of(r) for r in rows]
    before = [j.expected for j in PointwiseJudge(tiny_engine, config).judge(samples)]
    built = build_examples(PointwiseJudge(tiny_engine, config), tiny_engine.tokenizer, rows, 512)
    settings = SftSpec(learning_rate=5e-3, epochs=4, batch_size=4)
    steps: list[tuple[int, int]] = []
    result = train_sft(
        copy.deepcopy(tiny_engine.model),
        tiny_engine.tokenizer,
        built.examples,
        settings,
        LoraSpec(r=8, alpha=16, dropout=0.0),
        tmp_path,
        progress=lambda done, total, _: steps.append((done, total)),
    )
    assert result.steps == 8 and len(result.losses) == 8 and steps[-1] == (8, 8)
    assert result.losses[-1] < result.losses[0] / 2
    # Generation after training keeps its KV cache (TRL's checkpointing default would drop it).
    model = result.model
    checkpointing = (
        model.is_activation_checkpointing
        if hasattr(model, "is_activation_checkpointing")
        else model.is_gradient_checkpointing
    )
    assert model.config.use_cache and not checkpointing
    trained = TransformersEngine(result.model.merge_and_unload(), tiny_engine.tokenizer)
    after = [j.expected for j in PointwiseJudge(trained, config).judge(samples)]
    gold = [r.score for r in rows]
    error_before = sum(abs(b - g) for b, g in zip(before, gold, strict=True) if g is not None)
    error_after = sum(abs(a - g) for a, g in zip(after, gold, strict=True) if g is not None)
    assert error_after < error_before - 0.5 * len(rows)


def quickstart_with(judge: dict[str, object]) -> Experiment:
    data = yaml.safe_load(QUICKSTART.read_text())
    data["spec"]["judges"] = [judge]
    data["spec"].pop("arms", None)
    return validate_mapping(data)


def write_split(path: Path, rows: list[GoldRow]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        {
            "id": r.id,
            "prompt": r.prompt,
            "response": r.response,
            "reference": r.reference,
            "gold_score": r.score,
            "gold_reasoning": r.reasoning,
            "valid": r.valid,
            "invalid_reason": r.invalid_reason,
        }
        for r in rows
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


@pytest.mark.parametrize("reasoning", [False, True])
def test_unit_writes_adapter_training_json_and_judges_json(
    tiny_engine: TransformersEngine, tmp_path: Path, reasoning: bool
) -> None:
    judge: dict[str, object] = {
        "name": "judge",
        "model": {"name": "builtin:smollm2-135m-instruct"},
        "reasoning": reasoning,
        "training": {
            "sft": {"epochs": 1, "batch_size": 4, "learning_rate": 1e-3, "max_length": 512}
        },
    }
    if reasoning:
        judge["reasoning_budget"] = 16
        judge["training"] = {  # type: ignore[dict-item]
            **judge["training"],  # type: ignore[dict-item]
            "recipe": "sft+grpo",
            "grpo": {"num_generations": 2, "steps": 1, "prompts_per_step": 1},
        }
    invalid = GoldRow("bad", "Q?", "A.", None, None, "", False, "unparseable")
    write_split(tmp_path / "annotate" / "judge_train.jsonl", [*gold_rows(4), invalid])
    write_split(tmp_path / "annotate" / "judge_eval.jsonl", gold_rows(4))
    assert read_gold_rows(tmp_path / "annotate" / "judge_train.jsonl")[-1] == invalid

    summary = run_train_judge(quickstart_with(judge), tmp_path, "judge", engine=tiny_engine)

    training = json.loads((tmp_path / "judges" / "judge" / "training.json").read_text())
    assert training["examples"] == 4 and training["skipped"] == {"gold_invalid:unparseable": 1}
    assert training["epochs"] == 1 and len(training["train_loss"]) == training["steps"] == 1
    assert training["seconds"] > 0
    assert (training["grpo"] == "not run") is not reasoning  # test_units_judge_grpo checks it
    assert (tmp_path / "judges" / "judge" / "adapter" / "adapter_config.json").is_file()
    table = json.loads((tmp_path / "judges.json").read_text())
    assert [(e["name"], e["trained"]) for e in table] == [("judge", False), ("judge", True)]
    assert all(e["examples"] == 4 and e["reasoning"] is reasoning for e in table)
    assert summary.trained is not None and summary.adapter_dir is not None
    if not reasoning:
        # The saved adapter, loaded on the base model, is the judge the unit evaluated.
        reloaded = apply_adapter(tiny_engine, summary.adapter_dir)
        scores = PointwiseJudge(
            reloaded, JudgeConfig.from_proxy_spec(quickstart_with(judge).spec.judges[0])
        )
        judged = scores.judge([sample_of(r) for r in gold_rows(4)])
        assert table[1]["pearson"] == pytest.approx(
            _pearson([j.expected for j in judged], [r.score for r in gold_rows(4)]), abs=1e-6
        )


def _pearson(xs: list[float], ys: list[int | None]) -> float:
    from scipy import stats

    return float(stats.pearsonr(xs, [float(y or 0) for y in ys]).statistic)
