"""Process-level settings: where state lives, seeds, devices, logging."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from judgelab.spec.model import StrictModel

REDIS_URL_PATTERN = r"^(redis|rediss|unix)://.+"
DEVICE_PATTERN = r"^(auto|cpu|mps|cuda(:[0-9]+)?)$"


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
