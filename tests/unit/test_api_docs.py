"""docs/api-reference.md is generated from the proto comments and checked in up to date."""

from __future__ import annotations

from api_support import ROOT, load_script


def test_checked_in_api_reference_is_up_to_date() -> None:
    generated = load_script("gen_api_docs").render()
    checked_in = (ROOT / "docs" / "api-reference.md").read_text(encoding="utf-8")
    assert checked_in == generated, "run `python scripts/gen_api_docs.py`"


def test_reference_documents_every_rpc_and_field_with_examples() -> None:
    text = load_script("gen_api_docs").render()
    for rpc in ("`Score`", "`ScorePairwise`", "`ListJudges`", "`Annotate`", "`AnnotateStream`"):
        assert rpc in text
    assert "| `expected_score` | 3 | double | Expected score" in text
    assert "grpcurl -cacert ca.pem -H" in text and "JudgePoolClient(config)" in text
    assert "DO NOT EDIT" in text.splitlines()[2]
