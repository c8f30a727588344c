"""Prometheus metrics every judgelab service exports (names: ``judgelab_<what>_<unit>``).

One :class:`ServiceMetrics` per process, on its own registry, so tests can run many services
in one interpreter. Label sets are fixed: ``experiment`` and ``service`` on everything,
``judge`` on per-judge series, ``method``/``code`` on requests, ``reason`` on invalid outputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

if TYPE_CHECKING:
    from judgelab.judging.results import PairwiseJudgement, PointwiseJudgement

LATENCY_BUCKETS = (
    0.001,
    0.002,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    120,
    300,
    600,
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServiceMetrics:
    """The metric families of one service process."""

    def __init__(
        self, service: str, experiment: str = "", registry: CollectorRegistry | None = None
    ) -> None:
        self.service = service
        self.experiment = experiment
        self.registry = registry if registry is not None else CollectorRegistry()
        base = ["experiment", "service"]
        judge = [*base, "judge"]
        r = self.registry
        self.requests = Counter(
            "judgelab_requests",
            "gRPC requests by method and status code.",
            [*base, "method", "code"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "judgelab_request_seconds",
            "gRPC request latency.",
            [*base, "method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.judgements = Counter(
            "judgelab_judgements", "Judgements made (valid or not).", judge, registry=r
        )
        self.invalid = Counter(
            "judgelab_invalid_judgements",
            "Judge outputs that were invalid.",
            [*judge, "reason"],
            registry=r,
        )
        self.tokens_in = Counter(
            "judgelab_tokens_in", "Prompt tokens sent to judge models.", judge, registry=r
        )
        self.tokens_out = Counter(
            "judgelab_tokens_out", "Tokens judge models wrote.", judge, registry=r
        )
        self.model_calls = Counter(
            "judgelab_model_calls", "Batches sent to a judge model.", judge, registry=r
        )
        self.batch_size = Histogram(
            "judgelab_batch_size",
            "Items per model batch.",
            judge,
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.batch_seconds = Histogram(
            "judgelab_batch_seconds",
            "Model time per batch.",
            judge,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_length = Gauge(
            "judgelab_queue_length", "Items waiting for a judge model.", judge, registry=r
        )
        self.cache_hits = Counter(
            "judgelab_cache_hits", "Judgements served from the cache.", base, registry=r
        )
        self.cache_misses = Counter(
            "judgelab_cache_misses", "Cache lookups that missed.", base, registry=r
        )
        self.rate_limited_seconds = Counter(
            "judgelab_rate_limited_seconds",
            "Time spent waiting on the rate limit.",
            base,
            registry=r,
        )

        stream = [*base, "stream"]
        self.stream_lag = Gauge(
            "judgelab_stream_lag_messages",
            "Entries on a stream not yet delivered to this group.",
            stream,
            registry=r,
        )
        self.stream_pending = Gauge(
            "judgelab_stream_pending_messages",
            "Entries delivered to this group and not yet acknowledged.",
            stream,
            registry=r,
        )
        self.reclaimed = Counter(
            "judgelab_reclaimed_messages",
            "Entries taken over from a consumer that went idle.",
            stream,
            registry=r,
        )
        self.dead_lettered = Counter(
            "judgelab_dead_lettered_messages",
            "Entries moved to the dead-letter stream.",
            stream,
            registry=r,
        )
        self.stream_failures = Counter(
            "judgelab_stream_failures",
            "Entries whose processing failed (left pending for redelivery).",
            stream,
            registry=r,
        )

    def labels(self, **extra: str) -> dict[str, str]:
        return {"experiment": self.experiment, "service": self.service, **extra}

    def record_request(self, method: str, code: str, seconds: float) -> None:
        self.requests.labels(**self.labels(method=method, code=code)).inc()
        self.request_seconds.labels(**self.labels(method=method)).observe(seconds)

    def record_batch(self, judge: str, size: int, seconds: float) -> None:
        labels = self.labels(judge=judge)
        self.model_calls.labels(**labels).inc()
        self.batch_size.labels(**labels).observe(size)
        self.batch_seconds.labels(**labels).observe(seconds)

    def record_pointwise(self, judge: str, judgements: Sequence[PointwiseJudgement]) -> None:
        self._record(
            judge,
            [(j.valid, j.invalid_reason, j.prompt_tokens, j.completion_tokens) for j in judgements],
        )

    def record_pairwise(self, judge: str, judgements: Sequence[PairwiseJudgement]) -> None:
        self._record(
            judge,
            [(j.valid, j.invalid_reason, j.prompt_tokens, j.completion_tokens) for j in judgements],
        )

    def serve_http(self, port: int, host: str = "127.0.0.1") -> int:
        """Serve ``/metrics`` on a daemon thread; returns the bound port (0: any free one)."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return int(server.server_address[1])

    def _record(self, judge: str, rows: Sequence[tuple[bool, str | None, int, int]]) -> None:
        labels = self.labels(judge=judge)
        self.judgements.labels(**labels).inc(len(rows))
        self.tokens_in.labels(**labels).inc(sum(row[2] for row in rows))
        self.tokens_out.labels(**labels).inc(sum(row[3] for row in rows))
        for valid, reason, _, _ in rows:
            if not valid:
                self.invalid.labels(**labels, reason=reason or "unknown").inc()
