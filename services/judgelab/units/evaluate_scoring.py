"""Scores for Evaluate: proxy judges through ``JudgePool.Score``, gold through the annotator.

Both answer one :class:`Verdict` per sample id. A response no judge can be shown (empty) is an
invalid verdict without a call; a sample the service refuses as too long for the judge's
context becomes an invalid ``too_long`` verdict; a briefly unavailable service is retried with
back-off. A judge the pool does not serve, or one that is pairwise, raises :class:`Unscorable`
(its row of the matrix is null, with the reason). TLS and the bearer token come from the
``JUDGELAB_CLIENT_*`` variables (``judgelab.client``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import grpc

from judgelab.api.v1 import judge_pool_pb2, judge_pool_pb2_grpc
from judgelab.client.channel import ChannelConfig, access_hint, config_from_env
from judgelab.judging import Sample
from judgelab.serving.errors import error_details
from judgelab.units.gold import sample_index
from judgelab.units.gold_grpc import RETRYABLE, GrpcGold, sample_to_proto

EMPTY_RESPONSE = "empty_response"
UNKNOWN_JUDGE = "UNKNOWN_JUDGE"
#: (field, reason) of a refused sample -> the invalid reason its verdict gets.
SAMPLE_REFUSALS = {
    ("prompt", "TOO_LONG"): "too_long",
    ("content", "TOO_LONG"): "too_long",
    ("response", "TOO_LONG"): "too_long",
    ("reference", "TOO_LONG"): "too_long",
    ("reference", "REQUIRED"): "no_reference",
}
#: Samples per JudgePool.Score call: the pool batches across calls by itself.
CHUNK = 16
MAX_BACKOFF_S = 30.0
#: Per call; reasoning judges on a CPU take minutes for a chunk.
RPC_TIMEOUT_S = 3600.0


class Unscorable(RuntimeError):
    """This judge cannot score pointwise here (pairwise protocol, not served); why, in words."""


@dataclass(frozen=True)
class Verdict:
    """One judgement: the expected score, or None with the reason it is invalid."""

    value: float | None
    reason: str | None = None
    tokens: int = 0  # prompt + completion tokens (0 when unknown)
    latency_s: float = 0.0

    @classmethod
    def invalid(cls, reason: str) -> Verdict:
        return cls(None, reason)


def judgeable(samples: Sequence[Sample]) -> tuple[list[Sample], dict[str, Verdict]]:
    """(samples a judge can be shown, invalid verdicts for the others)."""
    shown = [s for s in samples if s.response.strip() and "\x00" not in s.response]
    skipped = {s.id: Verdict.invalid(EMPTY_RESPONSE) for s in samples if s not in shown}
    return shown, skipped


def gold_verdicts(
    address: str | ChannelConfig,
    experiment: str,
    samples: Sequence[Sample],
    advance: Callable[[int], None],
) -> dict[str, Verdict]:
    """The gold annotator's verdicts (its durable cache makes a rerun free)."""
    shown, verdicts = judgeable(samples)
    advance(len(verdicts))
    if not shown:
        return verdicts
    gold = GrpcGold(address, experiment)
    try:
        for label in gold.label(shown):
            verdicts[label.sample_id] = Verdict(label.expected, label.invalid_reason)
            advance(1)
    finally:
        gold.close()
    return verdicts


class JudgePoolClient:
    """``JudgePool.Score`` at ``address`` (or a :class:`ChannelConfig`), a chunk of samples per
    call."""

    def __init__(self, address: str | ChannelConfig, experiment: str, *, retries: int = 6) -> None:
        self.config = config_from_env(address)
        self.address = self.config.address
        self.experiment = experiment
        self.retries = retries
        self.channel = self.config.channel()
        self.stub = judge_pool_pb2_grpc.JudgePoolStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def score(
        self, judge: str, samples: Sequence[Sample], advance: Callable[[int], None]
    ) -> dict[str, Verdict]:
        shown, verdicts = judgeable(samples)
        advance(len(verdicts))
        for start in range(0, len(shown), CHUNK):
            for sample_id, verdict in self._chunk(judge, list(shown[start : start + CHUNK])):
                verdicts[sample_id] = verdict
                advance(1)
        return verdicts

    def _chunk(self, judge: str, chunk: list[Sample]) -> Iterator[tuple[str, Verdict]]:
        failures = 0
        while chunk:
            request = judge_pool_pb2.ScoreRequest(
                judge=judge, samples=[sample_to_proto(s) for s in chunk], experiment=self.experiment
            )
            try:
                response = self.stub.Score(
                    request, timeout=RPC_TIMEOUT_S, metadata=self.config.metadata()
                )
            except grpc.RpcError as error:
                code = error.code()
                if code == grpc.StatusCode.INVALID_ARGUMENT:
                    refused = self._refused(error, chunk)
                    yield from refused.items()
                    chunk = [s for s in chunk if s.id not in refused]
                    continue
                if code == grpc.StatusCode.FAILED_PRECONDITION:
                    raise Unscorable(f"not a pointwise judge: {error.details()}") from None
                failures += 1
                if code not in RETRYABLE or failures > self.retries:
                    raise RuntimeError(
                        f"judge pool at {self.address} failed for judge {judge!r}: "
                        f"{code.name}: {error.details()}{access_hint(code, self.config)}"
                    ) from error
                time.sleep(min(MAX_BACKOFF_S, 2.0**failures))
                continue
            for score in response.scores:
                yield (
                    score.sample_id,
                    Verdict(
                        score.expected_score if score.valid else None,
                        None if score.valid else (score.invalid_reason or "invalid"),
                        score.tokens_in + score.tokens_out,
                        score.latency.ToNanoseconds() / 1e9,
                    ),
                )
            return

    def _refused(self, error: grpc.RpcError, chunk: Sequence[Sample]) -> dict[str, Verdict]:
        """Invalid verdicts for the samples the service refused (too long for the judge, no
        reference for a reference-guided one); Unscorable for an unknown judge; else raises."""
        refused: dict[str, Verdict] = {}
        for detail in error_details(error):
            if detail.field == "judge" and detail.reason == UNKNOWN_JUDGE:
                raise Unscorable(f"not served by the judge pool: {detail.message}") from None
            index = sample_index(detail.field)
            reason = SAMPLE_REFUSALS.get((detail.field.rsplit(".", 1)[-1], detail.reason))
            if reason is None or index is None or index >= len(chunk):
                raise RuntimeError(
                    f"the judge pool refused the request: {detail.field}: {detail.reason}: "
                    f"{detail.message}"
                ) from error
            refused[chunk[index].id] = Verdict.invalid(reason)
        if not refused:
            raise RuntimeError(f"the judge pool refused the request: {error.details()}") from error
        return refused
