"""Process-level settings: where state lives, seeds, devices, logging."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from judgelab.spec.model import StrictModel

REDIS_URL_PATTERN = r"^(redis|rediss|unix)://.+"
DEVICE_PATTERN = r"^(auto|cpu|mps|cuda(:[0-9]+)?)$"
DAY_MS = 86_400_000


CLAIM_HELP = (
    " has held this long (ms) without acknowledging it (its worker crashed, hangs, or failed on "
    "it) is taken over by another consumer of the group (XAUTOCLAIM): keep it above the longest "
    "processing of one read. `judgelab serve --claim-idle-ms` overrides it."
)


class QueueSpec(StrictModel):
    """How the services consume the Redis streams: reclaim, dead-letter, startup wait."""

    judge_pool_claim_idle_ms: int = Field(
        default=60_000, ge=100, le=DAY_MS, description="A rollout group a judge pool" + CLAIM_HELP
    )
    rollout_claim_idle_ms: int = Field(
        default=600_000, ge=100, le=DAY_MS, description="A prompt a rollout generator" + CLAIM_HELP
    )
    # Gold reasoning can think for minutes: reclaiming sooner would judge items twice.
    gold_annotator_claim_idle_ms: int = Field(
        default=600_000, ge=100, le=DAY_MS, description="A gold request an annotator" + CLAIM_HELP
    )
    max_deliveries: int = Field(
        default=5,
        ge=1,
        le=1000,
        description="A message delivered this many times without being acknowledged (it "
        "failed every time, e.g. a poison message) goes to the stream's dead-letter stream "
        "(`<stream>:dead`) with the reason.",
    )
    redis_wait_s: float = Field(
        default=60.0,
        ge=0,
        le=3600,
        description="How long a starting service waits for Redis to answer (retrying with "
        "back-off) before it exits with an error. `judgelab serve --redis-wait-s` overrides it.",
    )


class RuntimeSpec(StrictModel):
    """How the run executes (local runtime or pods)."""

    redis_url: str | None = Field(
        default=None,
        pattern=REDIS_URL_PATTERN,
        description="Redis to use (redis://, rediss:// or unix://). Unset: the local runtime "
        "starts its own redis-server; in Kubernetes the chart's Redis.",
    )
    run_dir: str = Field(
        default="runs",
        min_length=1,
        description="Directory for checkpoints, caches, metrics and the report "
        "(one sub-directory per experiment).",
    )
    seed: int = Field(default=0, description="Global seed for sampling and training.")
    device: str = Field(
        default="auto",
        pattern=DEVICE_PATTERN,
        description="Torch device for models whose own device is `auto`; `auto` here picks "
        "cuda when a GPU is visible, else cpu.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Log level of every service."
    )
    queues: QueueSpec = Field(
        default_factory=QueueSpec,
        description="Redis-stream consumption of the services: claim timeouts, deliveries "
        "before dead-lettering, how long to wait for Redis at startup.",
    )
