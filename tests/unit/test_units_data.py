"""units.data: records from built-in, local (JSONL/Parquet) and hub sources; bad rows named by
number (or dropped with a report); deterministic, disjoint splits checked against the data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from judgelab.engines.base import ChatMessage
from judgelab.spec.data import DataSpec
from judgelab.spec.judges import ScoreScale
from judgelab.units.data import (
    DataError,
    LoadOptions,
    load_records,
    load_splits,
    split_records,
)

SCALE = ScoreScale()
SMALL = {"judge_train": 2, "judge_eval": 1, "policy_train": 1, "policy_eval": 1}


def local(path: Path, **fields: Any) -> DataSpec:
    return DataSpec.model_validate(
        {"source": "local", "path": str(path), "fields": fields, "splits": SMALL}
    )


def jsonl(tmp_path: Path, rows: list[Any], name: str = "data.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def good(i: int, **extra: Any) -> dict[str, Any]:
    return {"id": f"r{i}", "prompt": f"Question {i}?", "reference": f"Answer {i}.", **extra}


def error_of(data: DataSpec, options: LoadOptions | None = None) -> DataError:
    with pytest.raises(DataError) as caught:
        load_records(data, SCALE, options)
    return caught.value


def test_builtin_quickstart_loads_all_records_with_references() -> None:
    data = DataSpec.model_validate(
        {
            "source": "builtin",
            "name": "builtin:quickstart",
            "fields": {"reference": "reference"},
            "splits": SMALL,
        }
    )
    loaded = load_records(data, SCALE)
    assert len(loaded.records) == 96
    assert [r.id for r in loaded.records[:2]] == ["qs-001", "qs-002"]
    assert all(r.reference and r.prompt and not r.responses for r in loaded.records)
    assert loaded.dropped_rows == 0


def test_missing_values_name_their_lines(tmp_path: Path) -> None:
    rows = [good(1), {"id": "r2", "reference": "x"}, good(3), {"id": "r4", "reference": "y"}]
    error = error_of(local(jsonl(tmp_path, rows), reference="reference"))
    (problem,) = error.problems
    assert problem.rows == (2, 4) and problem.reason == "no 'prompt'"
    assert "no 'prompt': 2 lines (2, 4)" in str(error)


def test_a_column_no_row_has_is_a_mapping_error(tmp_path: Path) -> None:
    path = tmp_path / "data.parquet"
    pq.write_table(pa.Table.from_pylist([{"question": "q?", "answer": "a"}]), path)
    error = error_of(local(path, prompt="question", reference="reference"))
    assert "no column 'reference'" in str(error)
    assert "its columns: question, answer" in str(error)
    error = error_of(local(jsonl(tmp_path, [{"question": "q?"}]), prompt="prompt"))
    assert "no row of" in str(error) and "'prompt'" in str(error)


def test_empty_and_whitespace_texts_name_their_rows(tmp_path: Path) -> None:
    rows = [good(1), good(2, prompt="   "), good(3, reference=""), good(4, prompt="\n\t")]
    error = error_of(local(jsonl(tmp_path, rows), reference="reference"))
    by_reason = {p.reason: p.rows for p in error.problems}
    assert by_reason["empty or whitespace-only 'prompt'"] == (2, 4)
    assert by_reason["empty or whitespace-only 'reference'"] == (3,)


def test_labels_outside_the_gold_scale_name_their_rows(tmp_path: Path) -> None:
    rows = [
        good(1, score=3),
        good(2, score=10),
        good(3, score=-1),
        good(4, score="7"),
        good(5, score=9.0),
    ]
    error = error_of(local(jsonl(tmp_path, rows)), LoadOptions(label="score"))
    by_reason = {p.reason: p.rows for p in error.problems}
    assert by_reason["'score' outside the gold scale 0-9"] == (2, 3)
    assert by_reason["'score' not a number"] == (4,)


def test_many_bad_rows_show_the_first_few_and_a_count(tmp_path: Path) -> None:
    rows = [good(i, prompt=" ") for i in range(1, 13)]
    error = error_of(local(jsonl(tmp_path, rows + [good(13)])))
    assert "empty or whitespace-only 'prompt': 12 lines (1, 2, 3, 4, 5 and 7 more)" in str(error)


def test_unreadable_lines_and_non_objects_are_named(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_bytes(b'{"prompt": "ok?"}\n\n{"prompt": broken\n[1, 2]\n{"prompt": "\xff"}\n')
    error = error_of(local(path))
    by_reason = {p.reason: p.rows for p in error.problems}
    # Line 2 is blank: skipped, but the numbering keeps counting it.
    assert by_reason == {"not valid JSON": (3,), "not a JSON object": (4,), "not valid UTF-8": (5,)}


def test_chat_prompts_are_read_and_bad_ones_named(tmp_path: Path) -> None:
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}]
    rows = [
        good(1, prompt=chat),
        good(2, prompt=[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "?"}]),
        good(3, prompt=[{"role": "robot", "content": "Hi"}]),
        good(4, prompt=[{"role": "user", "content": " "}]),
        good(5, prompt=42),
    ]
    error = error_of(local(jsonl(tmp_path, rows)))
    assert sorted(row for p in error.problems for row in p.rows) == [2, 3, 4, 5]
    loaded = load_records(local(jsonl(tmp_path, rows[:1], "ok.jsonl")), SCALE)
    assert loaded.records[0].prompt == (
        ChatMessage("system", "Be brief."),
        ChatMessage("user", "Hi?"),
    )


def test_duplicate_ids_name_the_later_rows(tmp_path: Path) -> None:
    error = error_of(local(jsonl(tmp_path, [good(1), good(2), good(1), good(2)])))
    (problem,) = error.problems
    assert problem.rows == (3, 4) and "id" in problem.reason


def test_drop_leaves_bad_rows_out_with_a_report(tmp_path: Path) -> None:
    rows = [good(1), good(2, prompt=""), good(3, score=11), good(4), good(5, prompt=" ", score=12)]
    options = LoadOptions(label="score", on_bad_rows="drop")
    rows = [dict(r, score=r.get("score", 5)) for r in rows]
    loaded = load_records(local(jsonl(tmp_path, rows)), SCALE, options)
    assert [r.id for r in loaded.records] == ["r1", "r4"]
    assert [r.label for r in loaded.records] == [5.0, 5.0]
    assert loaded.dropped_rows == 3  # row 5 has two problems but is one row
    counts = {p.reason: p.count for p in loaded.dropped}
    assert counts == {
        "empty or whitespace-only 'prompt'": 2,
        "'score' outside the gold scale 0-9": 2,
    }
    report = loaded.dropped_report()
    assert "dropped 3 bad row(s)" in report and "2 lines (2, 5)" in report


def test_pairs_and_responses_become_record_responses(tmp_path: Path) -> None:
    path = tmp_path / "pairs.parquet"
    pq.write_table(pa.Table.from_pylist([{"q": "Which?", "good": "This one.", "bad": "No."}]), path)
    (record,) = load_records(local(path, prompt="q", chosen="good", rejected="bad"), SCALE).records
    assert record.id == "row-1" and record.responses == ("This one.", "No.")


def test_relative_paths_use_base_dir_and_missing_files_are_clear(tmp_path: Path) -> None:
    jsonl(tmp_path, [good(1)])
    data = local(Path("data.jsonl"))
    assert len(load_records(data, SCALE, base_dir=tmp_path).records) == 1
    with pytest.raises(DataError, match="does not exist"):
        load_records(local(tmp_path / "nope.jsonl"), SCALE)


def test_splits_are_deterministic_disjoint_and_sized(tmp_path: Path) -> None:
    data = local(jsonl(tmp_path, [good(i) for i in range(1, 21)]))
    _, first = load_splits(data, SCALE)
    _, again = load_splits(data, SCALE)
    assert first == again
    ids = {name: [r.id for r in records] for name, records in first.items()}
    assert {name: len(v) for name, v in ids.items()} == SMALL
    everything = [i for v in ids.values() for i in v]
    assert len(set(everything)) == len(everything)
    other = split_records(load_records(data, SCALE).records, data.splits, seed=1)
    assert [r.id for r in other.judge_train + other.judge_eval] != (
        ids["judge_train"] + ids["judge_eval"]
    )


def test_splits_larger_than_the_data_are_an_error(tmp_path: Path) -> None:
    rows = [good(1), good(2), good(3), good(4, prompt=""), good(5), good(6, prompt="")]
    data = local(jsonl(tmp_path, rows))
    with pytest.raises(DataError, match=r"need 5 records .* only 4 usable .*2 bad rows dropped"):
        load_splits(data, SCALE, LoadOptions(on_bad_rows="drop"))


def test_hub_failures_say_the_hub_needs_network(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    def offline(*_args: Any, **_kwargs: Any) -> None:
        raise ConnectionError("Couldn't reach 'owner/set' on the Hub (OfflineModeIsEnabled)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    data = DataSpec.model_validate({"source": "hub", "name": "owner/set", "splits": SMALL})
    with pytest.raises(DataError, match="needs network access.*source: local"):
        load_records(data, SCALE)


def test_hub_rows_are_checked_like_any_other(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    rows = [{"prompt": "Fine?"}, {"prompt": " "}]
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: datasets.Dataset.from_list(rows))
    data = DataSpec.model_validate({"source": "hub", "name": "owner/set", "splits": SMALL})
    error = error_of(data)
    assert error.problems[0].rows == (2,) and "1 row (2)" in str(error)
