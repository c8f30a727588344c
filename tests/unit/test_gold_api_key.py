"""The gold annotator's upstream API key: from an env var or a Secret file, never shown in a
log record, an exception, or an annotation, even when the upstream echoes it back."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_annotator_build import experiment
from test_engine_openai import FakeServer, Reply

from judgelab.annotator.server import build_gold_annotator
from judgelab.engines.api_keys import REDACTED, redact, resolve_api_key
from judgelab.engines.base import ChatMessage, EngineError, SamplingParams
from judgelab.engines.openai_engine import OpenAIEngine
from judgelab.judging import Sample
from judgelab.spec.model import ModelSpec

SECRET = "sk-gold-upstream-5ecret-value-0042"
VARIABLE = "JUDGELAB_TEST_GOLD_KEY"


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    server = FakeServer()
    yield server
    server.stop()


@pytest.fixture
def secret_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "secret" / "api-key"
    path.parent.mkdir()
    path.write_text(SECRET + "\n")  # `kubectl create secret --from-file` keeps the newline
    monkeypatch.delenv(VARIABLE, raising=False)
    monkeypatch.setenv(f"{VARIABLE}_FILE", str(path))
    return path


def test_the_key_comes_from_the_variable_or_its_file_twin(tmp_path: Path) -> None:
    assert resolve_api_key("K", {"K": " from-env-value "}) == "from-env-value"
    key_file = tmp_path / "key"
    key_file.write_text("from-file-value\n")
    assert resolve_api_key("K", {"K_FILE": str(key_file)}) == "from-file-value"
    assert resolve_api_key("K", {"K": "env-wins-value", "K_FILE": str(key_file)}) == (
        "env-wins-value"
    )
    with pytest.raises(EngineError, match="K_FILE: cannot read the API key file"):
        resolve_api_key("K", {"K_FILE": str(tmp_path / "missing")})
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(EngineError, match="is empty"):
        resolve_api_key("K", {"K_FILE": str(tmp_path / "empty")})
    with pytest.raises(EngineError, match="is not set or empty, and neither is K_FILE"):
        resolve_api_key("K", {})


def test_engine_sends_the_secret_file_key_and_never_shows_it(
    fake: FakeServer, secret_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake.script(
        "/v1/chat/completions",
        Reply(429, {"error": f"rate limited for key {SECRET}"}, {"Retry-After": "0"}),
        Reply(401, {"error": f"Incorrect API key provided: {SECRET}"}),
    )
    spec = ModelSpec(
        engine="openai", name="gold", base_url=fake.base_url, api_key_env=VARIABLE, max_retries=2
    )
    engine = OpenAIEngine.from_spec(spec)
    try:
        with pytest.raises(EngineError) as caught:
            engine.generate([[ChatMessage("user", "hi")]], SamplingParams())
        logging.getLogger("third.party").warning("echo: %s", SECRET)  # any logger at all
    finally:
        engine.close()
    assert fake.seen[0].headers["authorization"] == f"Bearer {SECRET}"
    shown = "".join(traceback.format_exception(caught.value)) + repr(engine)
    assert "HTTP 401" in shown and SECRET not in shown
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "rate limited for key ***" in logged and "echo: ***" in logged
    assert SECRET not in logged and SECRET not in caplog.text


def test_gold_annotator_with_a_rejected_key_leaks_it_nowhere(
    fake: FakeServer, secret_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake.script(
        "/v1/chat/completions",
        *[Reply(401, {"error": f"Incorrect API key provided: {SECRET}"})] * 4,
    )
    spec = experiment(
        model={
            "engine": "openai",
            "name": "gold-upstream",
            "base_url": fake.base_url,
            "api_key_env": VARIABLE,
            "max_retries": 0,
        },
        cache=False,
    )
    core = build_gold_annotator(spec)
    try:
        sample = Sample("s1", [ChatMessage("user", "Capital of France?")], "Paris.")
        outcome: object
        try:
            outcome = core.annotate([sample], per_sample_timeout_s=10)
        except Exception as error:  # noqa: BLE001 - whichever way it fails, check the text
            outcome = "".join(traceback.format_exception(error))
    finally:
        core.close()
    assert fake.seen and fake.seen[0].headers["authorization"] == f"Bearer {SECRET}"
    assert SECRET not in repr(outcome)
    assert "engine_error" in repr(outcome)  # the call failed upstream, as scripted
    assert SECRET not in caplog.text
    assert all(SECRET not in r.getMessage() for r in caplog.records)


def test_redact_replaces_every_registered_key() -> None:
    resolve_api_key("K", {"K": "another-registered-key"})
    assert redact("a another-registered-key b") == f"a {REDACTED} b"
