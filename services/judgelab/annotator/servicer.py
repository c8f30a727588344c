"""gRPC `judgelab.v1.GoldAnnotator` over a :class:`GoldAnnotatorCore`: validate, convert, call
the core, convert back."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from judgelab.annotator.annotating import Annotating, AnnotationResult
from judgelab.annotator.core import GoldAnnotatorCore
from judgelab.annotator.streaming import merge_completions
from judgelab.api.v1 import gold_annotator_pb2, gold_annotator_pb2_grpc
from judgelab.serving.convert import samples_from_proto, score_to_proto
from judgelab.serving.deadline import request_deadline
from judgelab.serving.errors import invalid

#: A remaining time past this is grpc's stand-in for "no deadline" (about 2**63 ns).


class GoldAnnotatorServicer(gold_annotator_pb2_grpc.GoldAnnotatorServicer):
    def __init__(self, core: GoldAnnotatorCore) -> None:
        self.core = core

    def Annotate(  # noqa: N802 - gRPC method name
        self, request: gold_annotator_pb2.AnnotateRequest, context: grpc.ServicerContext
    ) -> gold_annotator_pb2.AnnotateResponse:
        handle = self._start(request, request_deadline(context))
        context.add_callback(handle.cancel)
        results = handle.results()
        return gold_annotator_pb2.AnnotateResponse(annotations=[to_annotation(r) for r in results])

    def AnnotateStream(  # noqa: N802
        self,
        request_iterator: Iterator[gold_annotator_pb2.AnnotateRequest],
        context: grpc.ServicerContext,
    ) -> Iterator[gold_annotator_pb2.Annotation]:
        deadline = request_deadline(context)
        completions = merge_completions(
            request_iterator, lambda request: self._start(request, deadline)
        )
        context.add_callback(completions.cancel)
        for result in completions:
            yield to_annotation(result)

    def _start(
        self, request: gold_annotator_pb2.AnnotateRequest, deadline: float | None
    ) -> Annotating:
        timeout = per_sample_timeout(request)
        samples = samples_from_proto(request.samples)
        return self.core.start(samples, deadline, timeout)


def to_annotation(result: AnnotationResult) -> gold_annotator_pb2.Annotation:
    return gold_annotator_pb2.Annotation(
        score=score_to_proto(result.judgement),
        gold_reasoning=result.judgement.reasoning,
        cached=result.cached,
    )


def per_sample_timeout(request: gold_annotator_pb2.AnnotateRequest) -> float | None:
    """The request's per-sample timeout in seconds; None: the server's default."""
    if not request.HasField("per_sample_timeout"):
        return None
    seconds = request.per_sample_timeout.ToNanoseconds() / 1e9
    if seconds <= 0:
        raise invalid(
            "per_sample_timeout", "OUT_OF_RANGE", f"must be positive, got {seconds:g} s"
        )
    return seconds


