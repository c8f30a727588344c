"""``evaluation.baseline_answers``: the file's format, matching held-out prompts by id then by
exact prompt text, every bad input as one clear error (file:line), the path resolved from the
experiment file's folder (``judgelab validate``, the run's experiment copy), and the real
Arena-Hard baseline answers in ``../shared/data/arena-hard/``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from judgelab.cli import app
from judgelab.engines.base import ChatMessage
from judgelab.runtime.launch import run_directory
from judgelab.spec import SpecError, load_experiment
from judgelab.units.baseline_answers import (
    BaselineAnswersError,
    check_baseline_file,
    load_baseline_answers,
)
from judgelab.units.evaluate_outputs import EvalPrompt

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart.yaml"
ARENA_HARD = ROOT.parent / "shared" / "data" / "arena-hard"


def write_lines(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def prompts() -> list[EvalPrompt]:
    chat = (ChatMessage("system", "Be brief."), ChatMessage("user", "Hi"))
    return [
        EvalPrompt("r0", "Name a prime number.", None),
        EvalPrompt("r1", chat, None),
        EvalPrompt("r2", "What colour is the sky?", "Blue."),
    ]


def test_answers_match_by_id_first_then_by_exact_prompt_text(tmp_path: Path) -> None:
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    path = write_lines(
        tmp_path / "answers.jsonl",
        [
            {"id": "r0", "prompt": "not the text", "answer": "by id"},
            {"prompt": "Name a prime number.", "answer": "by text, but r0 matched by id"},
            {"prompt": chat, "answer": "chat by text"},
            "",
            {"id": 7, "prompt": "What colour is the sky?", "answer": "sky"},
        ],
    )
    answers = load_baseline_answers(path)
    assert answers.answers_for(prompts()) == ["by id", "chat by text", "sky"]
    assert answers.label == f"baseline answers: {path}"
    assert answers.by_id["7"] == "sky"  # an integer id is matched as text


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", r"answers\.jsonl:2: not JSON"),
        ('["a list"]', r":2: expected an object with answer and id or prompt, got list"),
        ('{"id": "x"}', r":2: answer must be text, got null"),
        ('{"id": "x", "answer": "   "}', r":2: answer is empty"),
        ('{"answer": "no key"}', r":2: needs an id or a prompt"),
        ('{"id": true, "answer": "a"}', r":2: id must be text or an integer, got bool"),
        ('{"prompt": [], "answer": "a"}', r":2: prompt must be text or a non-empty list"),
        ('{"prompt": [{"role": "bot", "content": "x"}], "answer": "a"}', r":2: prompt turns"),
        ('{"id": "r0", "answer": "again"}', r":2: duplicate id 'r0' \(first on line 1\)"),
    ],
)
def test_a_bad_line_is_named_by_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = write_lines(tmp_path / "answers.jsonl", ['{"id": "r0", "answer": "fine"}', line])
    with pytest.raises(BaselineAnswersError, match=message) as caught:
        load_baseline_answers(path)
    assert caught.value.problems[0].startswith(f"{path}:2: ")


def test_missing_empty_and_unmatched_files_say_so(tmp_path: Path) -> None:
    with pytest.raises(BaselineAnswersError, match="does not exist"):
        load_baseline_answers(tmp_path / "nowhere.jsonl")
    with pytest.raises(BaselineAnswersError, match="no baseline answers in the file"):
        load_baseline_answers(write_lines(tmp_path / "empty.jsonl", ["", "  "]))
    partial = load_baseline_answers(
        write_lines(tmp_path / "partial.jsonl", [{"id": "r1", "answer": "only r1"}])
    )
    with pytest.raises(BaselineAnswersError) as caught:
        partial.answers_for(prompts())
    text = str(caught.value)
    assert "no baseline answer for 2 of 3 held-out prompts" in text and "ids r0, r2" in text


def test_many_bad_lines_are_listed_with_a_count(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "bad.jsonl", ["{"] * 25)
    with pytest.raises(BaselineAnswersError, match="and 5 more") as caught:
        load_baseline_answers(path)
    assert len(caught.value.problems) == 25


def experiment_file(folder: Path, baseline: str) -> Path:
    raw = yaml.safe_load(QUICKSTART.read_text())
    raw["spec"]["evaluation"]["baseline_answers"] = baseline
    path = folder / "experiment.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_validate_and_run_resolve_the_path_from_the_experiment_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    study = tmp_path / "study"
    (study / "data").mkdir(parents=True)
    write_lines(study / "data" / "answers.jsonl", [{"id": "r0", "answer": "a"}])
    path = experiment_file(study, "data/answers.jsonl")
    monkeypatch.chdir(tmp_path)  # not the experiment's folder

    check_baseline_file(load_experiment(path), path)  # no error
    assert CliRunner().invoke(app, ["validate", str(path)]).exit_code == 0
    run_dir, text = run_directory(path, tmp_path / "runs")
    kept = yaml.safe_load(text)["spec"]["evaluation"]["baseline_answers"]
    assert kept == str((study / "data" / "answers.jsonl").resolve())
    assert run_dir == (tmp_path / "runs" / "quickstart").resolve()


def test_validate_and_run_refuse_a_missing_or_bad_file_before_anything_runs(
    tmp_path: Path,
) -> None:
    missing = experiment_file(tmp_path, "answers.jsonl")
    result = CliRunner().invoke(app, ["validate", str(missing)])
    assert result.exit_code == 1
    assert "spec.evaluation.baseline_answers: answers.jsonl" in result.output
    assert "does not exist" in result.output and "Traceback" not in result.output
    with pytest.raises(SpecError, match="does not exist"):
        run_directory(missing, tmp_path / "runs")
    write_lines(tmp_path / "answers.jsonl", [{"id": "r0", "answer": ""}, "{"])
    with pytest.raises(SpecError) as caught:
        check_baseline_file(load_experiment(missing), missing)
    lines = str(caught.value).splitlines()
    assert len(lines) == 2 and all(
        line.startswith(f"{missing}: spec.evaluation.") for line in lines
    )
    assert "answers.jsonl:1: answer is empty" in lines[0]
    assert "answers.jsonl:2: not JSON" in lines[1]


def test_real_arena_hard_baseline_answers_match_their_questions(tmp_path: Path) -> None:
    """The v0.1 gpt-4-0314 baseline answers, written as a baseline file at test time (half by
    prompt text, half by id), answer each of the 500 questions, in the questions' order."""
    if not ARENA_HARD.is_dir():
        pytest.skip(f"{ARENA_HARD} is not here (CI has it)")
    with (ARENA_HARD / "arena-hard-v0.1-question.jsonl").open() as handle:
        questions = [json.loads(line) for line in handle]
    rows = []
    expected: dict[str, str] = {}
    by_text: set[str] = set()
    with (ARENA_HARD / "arena-hard-v0.1-answers-gpt-4-0314.jsonl").open() as handle:
        for number, line in enumerate(handle):
            record = json.loads(line)
            user, assistant = record["messages"]
            expected[record["uid"]] = assistant["content"]["answer"]
            if number % 2:
                rows.append({"id": record["uid"], "answer": expected[record["uid"]]})
            else:
                by_text.add(record["uid"])
                rows.append({"prompt": user["content"], "answer": expected[record["uid"]]})
    answers = load_baseline_answers(write_lines(tmp_path / "gpt-4-0314.jsonl", rows))
    # Ids as the data loader gives a file without an id column ("row-N") where the answer is
    # keyed by prompt text; the question's uid where it is keyed by id.
    held_out = [
        EvalPrompt(f"row-{i + 1}" if q["uid"] in by_text else q["uid"], q["prompt"], None)
        for i, q in enumerate(questions)
    ]
    found = answers.answers_for(held_out)
    assert len(found) == len(questions) == 500 and 0 < len(by_text) < 500
    assert found == [expected[q["uid"]] for q in questions]
