"""The Annotate unit with the tiny model (or a constant one) as policy and a constant gold judge:
outputs per split, resume without resampling, invalid gold kept, gRPC and in-process alike."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from judgelab.annotator.cache import MemoryCache
from judgelab.annotator.core import GoldAnnotatorCore
from judgelab.annotator.server import start_gold_annotator_server
from judgelab.engines.base import Conversation, Generation, SamplingParams
from judgelab.engines.constant import ConstantEngine
from judgelab.engines.transformers_engine import TransformersEngine
from judgelab.judging import JudgeConfig, PointwiseJudge
from judgelab.spec import Experiment, validate_mapping
from judgelab.units import annotate as annotate_module
from judgelab.units.annotate import Cancelled, run_annotate
from judgelab.units.data import DataError
from judgelab.units.gold import GoldLabel

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart.yaml"
SPLITS = {"judge_train": 4, "judge_eval": 2, "policy_train": 2, "policy_eval": 1}
SPLIT_FILES = ["judge_train", "judge_eval", "policy_train", "policy_eval"]


def experiment(
    data: dict[str, Any] | None = None, gold: dict[str, Any] | None = None, **responses: Any
) -> Experiment:
    spec = yaml.safe_load(QUICKSTART.read_text())
    spec["spec"]["data"].update(data or {})
    spec["spec"]["gold"].update(gold or {})
    spec["spec"]["data"]["splits"] = SPLITS
    spec["spec"]["data"]["responses"].update({"max_new_tokens": 6, **responses})
    spec["spec"]["evaluation"]["heldout_prompts"] = 1
    return validate_mapping(spec, str(QUICKSTART))


def gold_core(exp: Experiment, engine: ConstantEngine | None = None) -> GoldAnnotatorCore:
    judge = PointwiseJudge(engine or ConstantEngine(), JudgeConfig.from_gold_spec(exp.spec.gold))
    return GoldAnnotatorCore(judge, cache=MemoryCache())


class CountingPolicy(ConstantEngine):
    """Answers "<word> n." (n counts responses); raises on generate call ``fail_on``."""

    def __init__(self, fail_on: int | None = None, word: str = "Answer") -> None:
        super().__init__()
        self.fail_on = fail_on
        self.word = word
        self.prompts = 0

    def generate(
        self, conversations: Sequence[Conversation], params: SamplingParams
    ) -> list[Generation]:
        if self.calls + 1 == self.fail_on:
            raise RuntimeError("crash while sampling")
        self._served()
        self.prompts += len(conversations)
        first = self.prompts - len(conversations)
        return [
            Generation(f"{self.word} {first + i}.", [], [0.0], "stop", 3)
            for i in range(len(conversations))
        ]


def lines(run_dir: Path, name: str) -> list[dict[str, Any]]:
    text = (run_dir / "annotate" / f"{name}.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines()]


def quiet(_done: int, _total: int, _note: str) -> None:
    pass


@pytest.fixture
def core() -> Iterator[GoldAnnotatorCore]:
    made = gold_core(experiment())
    yield made
    made.close()


def test_writes_each_split_with_gold_labels(
    tmp_path: Path, tiny_engine: TransformersEngine, core: GoldAnnotatorCore
) -> None:
    exp = experiment(per_prompt=2)
    summary = run_annotate(exp, tmp_path, annotator=core, policy_engine=tiny_engine, progress=quiet)
    train, held = lines(tmp_path, "judge_train"), lines(tmp_path, "judge_eval")
    assert (len(train), len(held)) == (8, 4)  # 4 and 2 prompts, 2 responses each
    assert {line["response_index"] for line in train} == {0, 1}
    for line in train + held:
        assert line["id"] == f"{line['record_id']}#{line['response_index']}"
        assert line["valid"] is True and line["gold_score"] == 7
        assert line["gold_reasoning"] == "The response is adequate."
        assert line["gold_stamp"]["config_hash"] == core.stamp.config_hash
        assert line["response_source"] == "sampled" and line["reference"]
    policy = lines(tmp_path, "policy_train") + lines(tmp_path, "policy_eval")
    assert len(policy) == 3 and all(
        set(p) == {"id", "row", "split", "prompt", "reference"} for p in policy
    )
    records = [line["record_id"] for line in train + held] + [p["id"] for p in policy]
    assert len(set(records)) == 4 + 2 + 2 + 1  # the splits are disjoint
    assert summary.responses_sampled == 12 and summary.valid == 12 and summary.invalid == 0
    assert summary.histogram == {7: 12}
    written = json.loads((tmp_path / "annotate" / "summary.json").read_text())
    assert written["valid"] == 12 and written["histogram"] == {"7": 12}


def test_a_rerun_resamples_nothing_and_costs_no_gold_call(
    tmp_path: Path, core: GoldAnnotatorCore
) -> None:
    exp = experiment()
    run_annotate(exp, tmp_path, annotator=core, policy_engine=CountingPolicy(), progress=quiet)
    before = {n: (tmp_path / "annotate" / f"{n}.jsonl").read_bytes() for n in SPLIT_FILES}
    calls = core.model_calls
    policy = CountingPolicy()
    summary = run_annotate(exp, tmp_path, annotator=core, policy_engine=policy, progress=quiet)
    assert policy.calls == 0 and core.model_calls == calls
    assert summary.responses_reused == 6 and summary.gold_cached == 6
    assert {n: (tmp_path / "annotate" / f"{n}.jsonl").read_bytes() for n in SPLIT_FILES} == before


def test_a_crash_while_sampling_resumes_with_the_missing_records(
    tmp_path: Path, core: GoldAnnotatorCore
) -> None:
    exp = experiment()
    exp.spec.policy.model.max_batch_size = 2  # 6 judge records: 3 batches of 2
    with pytest.raises(RuntimeError, match="crash"):
        run_annotate(
            exp, tmp_path, annotator=core, policy_engine=CountingPolicy(fail_on=2), progress=quiet
        )
    logged = (tmp_path / "annotate" / "responses.jsonl").read_text().splitlines()
    assert len(logged) == 2 and not (tmp_path / "annotate" / "judge_train.jsonl").exists()
    with (tmp_path / "annotate" / "responses.jsonl").open("a") as log:
        log.write('{"record_id": "torn')  # a write cut short by the crash
    policy = CountingPolicy(word="Later")
    summary = run_annotate(exp, tmp_path, annotator=core, policy_engine=policy, progress=quiet)
    assert policy.prompts == 4 and summary.responses_sampled == 4
    assert summary.responses_reused == 2
    kept = {json.loads(line)["response"] for line in logged}
    written = {w["response"] for n in ("judge_train", "judge_eval") for w in lines(tmp_path, n)}
    assert kept <= written and len(written) == 6


def test_invalid_gold_outputs_are_kept_and_counted(tmp_path: Path) -> None:
    exp = experiment()
    core = gold_core(exp, ConstantEngine(text="I would rather not say."))
    try:
        summary = run_annotate(
            exp, tmp_path, annotator=core, policy_engine=CountingPolicy(), progress=quiet
        )
    finally:
        core.close()
    written = lines(tmp_path, "judge_train") + lines(tmp_path, "judge_eval")
    assert len(written) == 6
    assert all(not w["valid"] and w["invalid_reason"] == "unparseable" for w in written)
    assert all(w["gold_score"] is None and w["gold_stamp"] for w in written)
    assert summary.invalid == 6 and summary.invalid_rate == 1.0
    assert summary.invalid_reasons == {"unparseable": 6} and summary.histogram == {}


def test_empty_sampled_responses_are_invalid_without_a_gold_call(
    tmp_path: Path, core: GoldAnnotatorCore
) -> None:
    summary = run_annotate(
        experiment(),
        tmp_path,
        annotator=core,
        policy_engine=ConstantEngine(text="  \n"),
        progress=quiet,
    )
    assert core.model_calls == 0
    assert summary.invalid_reasons == {"empty_response": 6}
    assert {line["invalid_reason"] for line in lines(tmp_path, "judge_eval")} == {"empty_response"}


def test_ready_made_pairs_are_labelled_without_sampling(
    tmp_path: Path, core: GoldAnnotatorCore
) -> None:
    path = tmp_path / "pairs.jsonl"
    path.write_text(
        "".join(
            json.dumps({"id": f"p{i}", "q": f"Question {i}?", "good": f"Good {i}.", "bad": "Bad."})
            + "\n"
            for i in range(9)
        )
    )
    data = {
        "source": "local",
        "name": None,
        "path": str(path),
        "fields": {"prompt": "q", "chosen": "good", "rejected": "bad"},
    }
    summary = run_annotate(
        experiment(data),
        tmp_path,
        annotator=core,
        policy_engine=CountingPolicy(fail_on=1),
        progress=quiet,
    )
    train = lines(tmp_path, "judge_train")
    assert len(train) == 8 and summary.responses_sampled == 0
    assert [line["response_source"] for line in train[:2]] == ["chosen", "rejected"]
    assert train[0]["reference"] is None


def test_bad_data_fails_before_any_model_call(tmp_path: Path, core: GoldAnnotatorCore) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(
        "".join(
            json.dumps({"prompt": " " if i in (3, 7) else f"Q{i}?"}) + "\n" for i in range(1, 12)
        )
    )
    data = {"source": "local", "name": None, "path": str(path), "fields": {"prompt": "prompt"}}
    policy = CountingPolicy()
    with pytest.raises(DataError, match=r"empty or whitespace-only 'prompt': 2 lines \(3, 7\)"):
        run_annotate(experiment(data), tmp_path, annotator=core, policy_engine=policy)
    assert policy.calls == 0 and core.model_calls == 0


def test_over_grpc_the_outputs_match_in_process(tmp_path: Path, core: GoldAnnotatorCore) -> None:
    exp = experiment()
    run_annotate(
        exp, tmp_path / "local", annotator=core, policy_engine=CountingPolicy(), progress=quiet
    )
    served_core = gold_core(exp)
    server = start_gold_annotator_server(served_core)
    try:
        summary = run_annotate(
            exp,
            tmp_path / "grpc",
            gold_address=server.address,
            policy_engine=CountingPolicy(),
            progress=quiet,
        )
    finally:
        server.stop(grace_s=1)
        served_core.close()
    assert summary.valid == 6 and served_core.model_calls >= 1
    for name in SPLIT_FILES:
        assert lines(tmp_path / "grpc", name) == lines(tmp_path / "local", name)


@pytest.mark.parametrize("transport", ["in-process", "grpc"])
def test_samples_too_long_for_the_gold_become_invalid_labels(
    tmp_path: Path, transport: str
) -> None:
    path = tmp_path / "data.jsonl"
    long_prompt = "word " * 400
    path.write_text(
        "".join(
            json.dumps({"id": f"r{i}", "prompt": long_prompt if i % 3 == 0 else f"Q{i}?"}) + "\n"
            for i in range(9)
        )
    )
    data = {"source": "local", "name": None, "path": str(path), "fields": {"prompt": "prompt"}}
    exp = experiment(data, gold={"max_tokens": 128})
    # Room for a short item's judge prompt and the gold's 128 tokens, not for 400 more words.
    core = gold_core(exp, ConstantEngine(context_length=600))
    server = start_gold_annotator_server(core) if transport == "grpc" else None
    try:
        summary = run_annotate(
            exp,
            tmp_path,
            gold_address=server.address if server else None,
            annotator=None if server else core,
            policy_engine=CountingPolicy(),
            progress=quiet,
        )
    finally:
        if server is not None:
            server.stop(grace_s=1)
        core.close()
    written = lines(tmp_path, "judge_train") + lines(tmp_path, "judge_eval")
    too_long = {w["record_id"] for w in written if w["invalid_reason"] == "too_long"}
    assert too_long and too_long == {f"r{i}" for i in range(0, 9, 3)} & {
        w["record_id"] for w in written
    }
    assert all(w["valid"] for w in written if w["record_id"] not in too_long)
    assert summary.invalid_reasons == {"too_long": len(too_long)}


def test_progress_reports_k_of_n_with_rate_and_a_cancel_resumes(
    tmp_path: Path, core: GoldAnnotatorCore
) -> None:
    exp = experiment()
    exp.spec.policy.model.max_batch_size = 2
    stop = threading.Event()
    seen: list[tuple[int, int, str]] = []

    def progress(done: int, total: int, note: str) -> None:
        seen.append((done, total, note))
        if note.startswith("responses 2/"):
            stop.set()

    with pytest.raises(Cancelled):
        run_annotate(
            exp,
            tmp_path,
            annotator=core,
            policy_engine=CountingPolicy(),
            progress=progress,
            cancelled=stop,
        )
    assert seen[-1][:2] == (2, 6) and "/s, ETA" in seen[-1][2]
    seen.clear()
    summary = run_annotate(
        exp, tmp_path, annotator=core, policy_engine=CountingPolicy(), progress=progress
    )
    assert summary.responses_reused == 2 and summary.responses_sampled == 4
    gold = [s for s in seen if s[2].startswith("gold")]
    assert gold[0][:2] == (0, 6) and gold[-1][:2] == (6, 6)


def test_without_address_or_annotator_the_gold_judge_runs_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gold_engine = ConstantEngine(answer="3", text="Weak.\nScore: 3")
    monkeypatch.setattr(annotate_module, "_build_engine", lambda model: gold_engine)
    summary = run_annotate(experiment(), tmp_path, policy_engine=CountingPolicy(), progress=quiet)
    assert summary.histogram == {3: 6} and gold_engine.calls >= 1


# A real gold judgement from the quickstart: "9" is most likely, yet gold is unsure.
UNSURE = ((0, 0.189), (1, 0.148), (2, 0.042), (3, 0.070), (4, 0.038), (5, 0.092), (6, 0.038),
          (7, 0.051), (8, 0.091), (9, 0.241))  # fmt: skip


def test_the_gold_label_is_its_rounded_expected_score_or_its_argmax() -> None:
    expected = sum(score * p for score, p in UNSURE)
    label = GoldLabel("s", 9, expected, UNSURE, "", True, None, None)
    assert label.argmax == 9 and round(expected, 2) == 4.54
    assert label.labelled("expected", 0, 9).score == 5
    assert label.labelled("argmax", 0, 9).score == 9
    assert dataclasses.replace(label, expected=4.5).labelled("expected", 0, 9).score == 5
    assert dataclasses.replace(label, expected=9.4).labelled("expected", 0, 8).score == 8
    refused = GoldLabel.refused("s", "empty_response", "")
    assert refused.labelled("expected", 0, 9) == refused and refused.argmax is None


def test_rows_keep_the_argmax_beside_the_label(
    tmp_path: Path, tiny_engine: TransformersEngine, core: GoldAnnotatorCore
) -> None:
    run_annotate(experiment(), tmp_path, annotator=core, policy_engine=tiny_engine, progress=quiet)
    for line in lines(tmp_path, "judge_train"):
        assert line["gold_argmax"] == 7
        assert line["gold_score"] == int(line["gold_expected"] + 0.5)
