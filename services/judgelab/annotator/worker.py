"""The gold annotator's Redis-stream mode: gold requests in, gold results out.

Each annotation carries the judgement's every field (the gold reasoning included: it is
training data for reasoning judges) and whether it came from the cache.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from judgelab.annotator.annotating import AnnotationResult
from judgelab.annotator.core import GoldAnnotatorCore
from judgelab.judging.samples import Sample
from judgelab.queues.consumer import Delivery, Output
from judgelab.queues.messages import GoldRequest, GoldResult
from judgelab.queues.names import StreamNames
from judgelab.serving.stream_worker import Finish


class GoldRequestHandler:
    """A :class:`StreamHandler` that annotates gold requests with the annotator core."""

    def __init__(self, core: GoldAnnotatorCore, names: StreamNames) -> None:
        self.core = core
        self.names = names

    def parse(self, delivery: Delivery) -> tuple[str, GoldRequest]:
        request = GoldRequest.from_fields(delivery.fields)
        return request.request_id, request

    def submit(self, request: GoldRequest) -> Finish:
        samples = [Sample(s.id, s.prompt, s.response, s.reference) for s in request.samples]
        handle = self.core.start(samples)

        def finish() -> Sequence[Output]:
            annotations = [annotation_json(result) for result in handle.results()]
            result = GoldResult(request_id=request.request_id, annotations=annotations)
            return [(self.names.gold_results, result.to_fields())]

        return finish


def annotation_json(result: AnnotationResult) -> dict[str, Any]:
    fields: dict[str, Any] = dataclasses.asdict(result.judgement)
    fields["cached"] = result.cached
    fields["gold_reasoning"] = result.judgement.reasoning
    return fields
