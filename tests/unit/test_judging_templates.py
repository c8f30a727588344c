"""Versioned prompt templates: loading, safe rendering, hashes."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from judgelab.judging import JudgeConfig, PairwiseJudge, PointwiseJudge, Scale
from judgelab.judging.prompting import JudgePrompt
from judgelab.judging.templates import (
    Template,
    builtin_template_ids,
    default_template_id,
    load_template,
)

COMBOS = list(itertools.product(("pointwise", "pairwise"), (False, True), (False, True)))
POINTWISE_HEAD = "# id: x-v1\n# version: 1\n# kind: pointwise\n=== system ===\ns\n=== user ===\n"
HOSTILE = "{x} {{response}} {{reference}} {0} }{ \\1 \\g<0> %s $response"


@pytest.mark.parametrize(("protocol", "reasoning", "reference"), COMBOS)
def test_every_default_template_exists_and_fits_its_judge(
    protocol: str, reasoning: bool, reference: bool
) -> None:
    template_id = default_template_id(protocol, reasoning, reference)
    template = load_template(template_id)
    assert template.id == template_id and template.version == 1
    assert (template.kind, template.reasoning, template.reference) == (
        protocol,
        reasoning,
        reference,
    )
    assert ("reference" in template.placeholders) is reference
    assert re.fullmatch(r"[0-9a-f]{64}", template.sha256)


def test_builtin_ids_are_the_eight_judges_and_the_rubrics() -> None:
    rubrics = {"rubric-v1", "rubric-writer-v1", "rubric-writer-ref-v1"}
    expected = {default_template_id(*combo) for combo in COMBOS} | rubrics
    assert set(builtin_template_ids()) == expected


def _user_text(protocol: str, reference: bool, values: dict[str, str]) -> str:
    config = JudgeConfig(name="j", model="m", protocol=protocol, reference_guided=reference)
    return JudgePrompt(config).render(values)[1].content


@pytest.mark.parametrize("reference", [False, True])
def test_braces_and_placeholders_in_user_text_survive_rendering(reference: bool) -> None:
    text = _user_text(
        "pointwise",
        reference,
        {"prompt": "P " + HOSTILE, "response": "R " + HOSTILE, "reference": "F " + HOSTILE},
    )
    assert "P " + HOSTILE in text
    assert "R " + HOSTILE in text
    assert ("F " + HOSTILE in text) is reference


def test_the_response_is_delimited() -> None:
    text = _user_text("pointwise", False, {"prompt": "question?", "response": "the answer"})
    assert (
        "[The Start of the Assistant's Response]\nthe answer\n[The End of the Assistant's Response]"
        in text
    )
    pair = _user_text("pairwise", False, {"prompt": "q", "response_a": "one", "response_b": "two"})
    assert "[The Start of Assistant A's Response]\none\n[The End of Assistant A's Response]" in pair
    assert "[The Start of Assistant B's Response]\ntwo\n[The End of Assistant B's Response]" in pair


def test_rubric_is_inserted_only_when_asked_for() -> None:
    values = {"prompt": "q", "response": "r"}
    plain = JudgePrompt(JudgeConfig(name="j", model="m")).render(values)[1].content
    rubric = JudgePrompt(JudgeConfig(name="j", model="m", rubric=True)).render(values)[1].content
    assert "Criteria, most important first" in rubric
    assert "Criteria" not in plain and "\n\n\n" not in plain


def test_answer_format_follows_scale_and_engine() -> None:
    values = {"prompt": "q", "response": "r"}

    def user(**kwargs: object) -> str:
        config = JudgeConfig(name="j", model="m", **kwargs)
        return JudgePrompt(config).render(values)[1].content

    assert user().endswith(
        "to 9 (best). Reply in exactly this format and write nothing else:\nScore: <n>"
    )
    assert user(scale=Scale(0, 10)).endswith("\nScore: <n>/10")
    assert user(engine="openai").endswith("\n<n>")
    assert user(engine="openai", reasoning=True).endswith("\nScore: <n>")


def test_hash_follows_the_file_text(tmp_path: Path) -> None:
    original = load_template("pointwise-v1")
    (tmp_path / "pointwise-v1.txt").write_text(original.text, encoding="utf-8")
    assert load_template("pointwise-v1", tmp_path).sha256 == original.sha256
    edited = original.text.replace("impartial judge", "impartial, careful judge")
    (tmp_path / "pointwise-v1.txt").write_text(edited, encoding="utf-8")
    changed = load_template("pointwise-v1", tmp_path)
    assert changed.id == original.id and changed.sha256 != original.sha256
    config = JudgeConfig(name="j", model="m")
    assert config.config_hash(changed) != config.config_hash(original)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            POINTWISE_HEAD + "{{nope}}",
            "unknown placeholders",
        ),
        (
            POINTWISE_HEAD + "{{prompt}}",
            "missing placeholders",
        ),
        ("# id: x-v1\n# version: one\n# kind: fragment\n=== text ===\nt", "integer"),
        ("# id: x-v1\n# version: 1\n# kind: essay\n=== text ===\nt", "kind"),
        ("# version: 1\n# kind: fragment\n=== text ===\nt", "id"),
        ("# id: x-v1\n# version: 1\n# kind: fragment\nstray\n=== text ===\nt", "before the first"),
    ],
)
def test_malformed_templates_are_rejected(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Template.parse(text)


def test_unknown_or_unsafe_ids_are_rejected() -> None:
    with pytest.raises(ValueError, match="built-in templates: pairwise-reasoning-ref-v1"):
        load_template("pointwise-v9")
    with pytest.raises(ValueError, match="must match"):
        load_template("../pointwise-v1")


def test_a_template_for_another_kind_of_judge_is_refused() -> None:
    engine = None  # never reached: the template check comes first
    pairwise_template = load_template("pairwise-v1")
    with pytest.raises(ValueError, match="template 'pairwise-v1' is for"):
        PointwiseJudge(engine, JudgeConfig(name="j", model="m", template="pairwise-v1"))
    with pytest.raises(ValueError, match="not pairwise"):
        PairwiseJudge(engine, JudgeConfig(name="j", model="m"), pairwise_template)
