"""Pointwise judge: one response, an integer score on the judge's scale.

* Non-reasoning: one scoring call for the whole batch reads the probability of each score
  after the prefilled ``"Score: "`` (nothing prefilled on chat APIs: the prompt asks for the
  bare number); the reward is the expected score sum(x p(x)) over the renormalised
  distribution. Multi-digit scales: see ``judging.scale``.
* Reasoning: the judge writes its reasoning and a final ``Score: n`` line, parsed strictly
  from the last line (``judging.parsing``). On 0-9 scales the top log-probs at the score's
  token give the distribution (``judging.logprobs``); otherwise it is one-hot at the parsed
  score and ``mass`` is 1.

Model and parse problems come back as invalid judgements, never as exceptions. A missing
reference for a reference-guided judge is the caller's error (ValueError, before any work).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from judgelab.engines.base import CandidateScores, ChatMessage, EngineError, Generation
from judgelab.judging.engine_calls import generate_verdicts, score_with_tokens
from judgelab.judging.judge_base import JudgeBase
from judgelab.judging.logprobs import verdict_probabilities
from judgelab.judging.parsing import Parsed, parse_score
from judgelab.judging.prompting import assistant_prefix
from judgelab.judging.results import InvalidReason, PointwiseJudgement
from judgelab.judging.samples import Sample, prompt_text, reference_text
from judgelab.judging.scale import SCORE_PREFIX

Distribution = tuple[tuple[int, float], ...]


class PointwiseJudge(JudgeBase):
    """Scores samples with one engine, config and template (default: the config's)."""

    protocol = "pointwise"

    def judge(self, samples: Sequence[Sample]) -> list[PointwiseJudgement]:
        conversations = [self.conversation(sample) for sample in samples]
        if not samples:
            return []
        if self.config.reasoning:
            return self._judge_reasoning(samples, conversations)
        return self._judge_direct(samples, conversations)

    def conversation(self, sample: Sample) -> list[ChatMessage]:
        reference = reference_text(sample.id, sample.reference, self.config.reference_guided)
        return self.prompt.render(
            {
                "prompt": prompt_text(sample.prompt),
                "response": sample.response,
                "reference": reference,
                **self.prompt.item_values(sample.id, sample.rubric),
            }
        )

    # -- non-reasoning ------------------------------------------------------------------
    def _judge_direct(
        self, samples: Sequence[Sample], conversations: list[list[ChatMessage]]
    ) -> list[PointwiseJudgement]:
        results, latency = score_with_tokens(
            self.engine,
            conversations,
            self.config.scale.candidates(),
            assistant_prefix(self.config),
            self.count_prompt_tokens,
        )
        return [
            self._from_scores(sample.id, result, latency)
            for sample, result in zip(samples, results, strict=True)
        ]

    def _from_scores(
        self, sample_id: str, result: tuple[CandidateScores, int] | EngineError, latency: float
    ) -> PointwiseJudgement:
        if isinstance(result, EngineError):
            return self._invalid(sample_id, "engine_error", "", latency, detail=str(result))
        scores, prompt_tokens = result
        probs = scores.probs
        if not any(p > 0 for p in probs.values()):
            return self._invalid(
                sample_id,
                "unparseable",
                "",
                latency,
                prompt_tokens,
                0,
                detail="the model put no probability on any score",
            )
        distribution = tuple((self.config.scale.value_of(c), probs[c]) for c in scores.candidates)
        argmax = max(distribution, key=lambda vp: (vp[1], -vp[0]))[0]
        return self._valid(
            sample_id, distribution, argmax, scores.mass, "", latency, prompt_tokens, 0
        )

    # -- reasoning ----------------------------------------------------------------------
    def _judge_reasoning(
        self, samples: Sequence[Sample], conversations: list[list[ChatMessage]]
    ) -> list[PointwiseJudgement]:
        results, latency = generate_verdicts(
            self.engine,
            self.config,
            conversations,
            top_logprobs=self.config.scale.single_token_digits,
        )
        judged = [
            self._from_generation(sample.id, result, latency)
            for sample, result in zip(samples, results, strict=True)
        ]
        if not self.config.forces_verdict:
            return judged
        return [
            self._forced(conversation, result, judgement)
            if judgement.invalid_reason == "truncated" and isinstance(result, Generation)
            else judgement
            for conversation, result, judgement in zip(conversations, results, judged, strict=True)
        ]

    def _forced(
        self, conversation: list[ChatMessage], cut: Generation, judged: PointwiseJudgement
    ) -> PointwiseJudgement:
        """The verdict line prefilled after the cut-off reasoning, its score distribution read;
        the truncated judgement stands when even that gives no score."""
        prefix = f"{cut.text.rstrip()}\n{SCORE_PREFIX}"
        results, seconds = score_with_tokens(
            self.engine, [conversation], self.config.scale.candidates(), prefix, False
        )
        forced = self._from_scores(judged.sample_id, results[0], judged.latency_s + seconds)
        if not forced.valid:
            return judged
        return replace(
            forced,
            reasoning=judged.reasoning,
            prompt_tokens=judged.prompt_tokens,
            completion_tokens=judged.completion_tokens,
            detail="the reasoning reached its budget: the verdict line was forced and its score "
            "read from the model's distribution",
        )

    def _from_generation(
        self, sample_id: str, result: Generation | EngineError, latency: float
    ) -> PointwiseJudgement:
        if isinstance(result, EngineError):
            return self._invalid(sample_id, "engine_error", "", latency, detail=str(result))
        parsed = parse_score(result.text, self.config.scale, result.finish_reason)
        reasoning = join_reasoning(result.reasoning, parsed.reasoning)
        tokens = (result.prompt_tokens, result.completion_tokens)
        if parsed.verdict is None:
            assert parsed.invalid_reason is not None
            return self._invalid(sample_id, parsed.invalid_reason, reasoning, latency, *tokens)
        value = int(parsed.verdict)
        distribution, mass = self._distribution(result, parsed, value)
        return self._valid(sample_id, distribution, value, mass, reasoning, latency, *tokens)

    def _distribution(
        self, generation: Generation, parsed: Parsed, value: int
    ) -> tuple[Distribution, float]:
        values = self.config.scale.values
        raw = None
        if self.config.scale.single_token_digits:
            raw = verdict_probabilities(
                generation,
                parsed.line[: parsed.verdict_end],
                str(value),
                [str(v) for v in values],
            )
        mass = sum(raw.values()) if raw else 0.0
        if raw is None or mass <= 0:
            return tuple((v, 1.0 if v == value else 0.0) for v in values), 1.0
        return tuple((v, raw[str(v)] / mass) for v in values), mass

    # -- results ------------------------------------------------------------------------
    def _valid(
        self,
        sample_id: str,
        distribution: Distribution,
        argmax: int,
        mass: float,
        reasoning: str,
        latency: float,
        prompt_tokens: int,
        completion_tokens: int,
    ) -> PointwiseJudgement:
        return PointwiseJudgement(
            sample_id=sample_id,
            stamp=self.prompt.stamp,
            expected=sum(v * p for v, p in distribution),
            argmax=argmax,
            distribution=distribution,
            mass=mass,
            reasoning=reasoning,
            valid=True,
            invalid_reason=None,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            latency_s=latency,
        )

    def too_long(self, sample_id: str, detail: str) -> PointwiseJudgement:
        """The judgement of a sample whose judge prompt does not fit the context (not run)."""
        return self._invalid(sample_id, "too_long", "", 0.0, detail=detail)

    def _invalid(
        self,
        sample_id: str,
        reason: InvalidReason,
        reasoning: str,
        latency: float,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        detail: str = "",
    ) -> PointwiseJudgement:
        return PointwiseJudgement(
            sample_id=sample_id,
            stamp=self.prompt.stamp,
            expected=0.0,
            argmax=0,
            distribution=(),
            mass=0.0,
            reasoning=reasoning,
            valid=False,
            invalid_reason=reason,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            latency_s=latency,
            detail=detail,
        )


def join_reasoning(channel: str | None, written: str) -> str:
    """A server's separate reasoning channel (if any) followed by the text before the verdict."""
    return "\n\n".join(part for part in (channel or "", written) if part.strip())
