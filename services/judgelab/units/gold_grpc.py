"""Gold labels from the gold annotator service over gRPC (``AnnotateStream``).

One stream carries every sample in requests of CHUNK; labels come back as each is done. When
the service is briefly unavailable (restarting, queue full) the samples still unlabelled are
sent again after a back-off: the ones it had finished come from its cache. A request it refuses
as too long for the gold model is split to find the sample (unary ``Annotate`` per chunk).
TLS and the bearer token come from the ``JUDGELAB_CLIENT_*`` variables (``judgelab.client``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

import grpc

from judgelab.api.v1 import common_pb2, gold_annotator_pb2, gold_annotator_pb2_grpc
from judgelab.client.channel import ChannelConfig, access_hint, config_from_env
from judgelab.judging import PointwiseJudgement, Sample, Stamp
from judgelab.judging.results import InvalidReason
from judgelab.serving.errors import error_details
from judgelab.units.gold import CHUNK, GoldError, GoldLabel, refusals

ROLES = {
    "system": common_pb2.ROLE_SYSTEM,
    "user": common_pb2.ROLE_USER,
    "assistant": common_pb2.ROLE_ASSISTANT,
}
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})
#: Back-off before retry n is min(MAX_BACKOFF_S, 2 ** n) seconds.
MAX_BACKOFF_S = 30.0


class GrpcGold:
    """The gold annotator at ``address`` (host:port, reached as the environment says, or a
    :class:`ChannelConfig`)."""

    def __init__(
        self,
        address: str | ChannelConfig,
        experiment: str,
        *,
        chunk: int = CHUNK,
        retries: int = 6,
    ) -> None:
        self.config = config_from_env(address)
        self.address = self.config.address
        self.experiment = experiment
        self.chunk = chunk
        self.retries = retries
        self.channel = self.config.channel()
        self.stub = gold_annotator_pb2_grpc.GoldAnnotatorStub(self.channel)

    def label(self, samples: Sequence[Sample]) -> Iterator[GoldLabel]:
        pending = {sample.id: sample for sample in samples}
        failures = 0
        while pending:
            try:
                stream = self.stub.AnnotateStream(
                    self._requests(list(pending.values())), metadata=self.config.metadata()
                )
                for annotation in stream:
                    label = label_from_proto(annotation)
                    if pending.pop(label.sample_id, None) is not None:
                        yield label
            except grpc.RpcError as error:
                code = error.code()
                if code == grpc.StatusCode.INVALID_ARGUMENT:
                    yield from self._split(list(pending.values()), pending)
                    continue
                failures += 1
                if code not in RETRYABLE or failures > self.retries:
                    raise GoldError(self._failure(error)) from error
                time.sleep(min(MAX_BACKOFF_S, 2.0**failures))

    def close(self) -> None:
        self.channel.close()

    def _requests(self, samples: list[Sample]) -> Iterator[gold_annotator_pb2.AnnotateRequest]:
        for start in range(0, len(samples), self.chunk):
            yield self._request(samples[start : start + self.chunk])

    def _request(self, samples: Sequence[Sample]) -> gold_annotator_pb2.AnnotateRequest:
        return gold_annotator_pb2.AnnotateRequest(
            samples=[sample_to_proto(s) for s in samples],
            experiment=self.experiment,
            priority=gold_annotator_pb2.PRIORITY_LOW,
        )

    def _split(self, samples: list[Sample], pending: dict[str, Sample]) -> Iterator[GoldLabel]:
        """Unary calls per chunk; refused samples become ``too_long`` labels."""
        for start in range(0, len(samples), self.chunk):
            chunk = samples[start : start + self.chunk]
            while chunk:
                try:
                    response = self.stub.Annotate(
                        self._request(chunk), metadata=self.config.metadata()
                    )
                except grpc.RpcError as error:
                    if error.code() != grpc.StatusCode.INVALID_ARGUMENT:
                        raise
                    problems = [(d.field, d.reason, d.message) for d in error_details(error)]
                    refused = refusals(problems, chunk)
                    for sample_id, label in refused.items():
                        pending.pop(sample_id, None)
                        yield label
                    chunk = [s for s in chunk if s.id not in refused]
                    continue
                for annotation in response.annotations:
                    label = label_from_proto(annotation)
                    pending.pop(label.sample_id, None)
                    yield label
                chunk = []

    def _failure(self, error: grpc.RpcError) -> str:
        code = error.code()
        details = error.details()
        hint = access_hint(code, self.config)
        return f"gold annotator at {self.address} failed: {code.name}: {details}{hint}"


def sample_to_proto(sample: Sample) -> common_pb2.Sample:
    turns = (
        [("user", sample.prompt)]
        if isinstance(sample.prompt, str)
        else [(m.role, m.content) for m in sample.prompt]
    )
    message = common_pb2.Sample(
        id=sample.id,
        prompt=[common_pb2.ChatMessage(role=ROLES[role], content=text) for role, text in turns],
        response=sample.response,
    )
    if sample.reference is not None:
        message.reference = sample.reference
    if sample.rubric is not None:
        message.rubric = sample.rubric
    return message


def label_from_proto(annotation: gold_annotator_pb2.Annotation) -> GoldLabel:
    score = annotation.score
    judgement = PointwiseJudgement(
        sample_id=score.sample_id,
        stamp=Stamp(score.judge, score.template_id, score.template_hash, score.judge_config_hash),
        expected=score.expected_score,
        argmax=score.argmax_score,
        distribution=tuple((p.value, p.probability) for p in score.distribution),
        mass=score.score_mass,
        reasoning=annotation.gold_reasoning or score.reasoning,
        valid=score.valid,
        invalid_reason=_reason(score.invalid_reason),
        prompt_tokens=score.tokens_in,
        completion_tokens=score.tokens_out,
        latency_s=score.latency.ToNanoseconds() / 1e9,
    )
    return GoldLabel.of(judgement, annotation.cached)


def _reason(text: str) -> InvalidReason | None:
    return text or None  # type: ignore[return-value]
