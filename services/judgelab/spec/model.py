"""Where a model comes from and which backend runs it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from judgelab.spec.common import Issue, raise_issues

BUILTIN_MODELS = ("smollm2-135m-instruct",)


class StrictModel(BaseModel):
    """Base for every spec model: unknown keys are errors, not silently dropped."""

    # NaN/inf would slip past every range check (`nan >= 0` is False, `inf > 0` is True).
    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)


class ModelSpec(StrictModel):
    """One model endpoint: an in-process `transformers` model or an OpenAI-compatible server."""

    engine: Literal["transformers", "openai"] = Field(
        default="transformers",
        description="Backend: `transformers` runs the model in-process (CPU/GPU); "
        "`openai` calls an OpenAI-compatible server such as `vllm serve` or llama.cpp's server.",
    )
    name: str = Field(
        default="builtin:smollm2-135m-instruct",
        description="Model id. `builtin:<name>` for a model shipped with judgelab, a local "
        "directory, or a hub id (hub ids need network access at run time). For `openai` "
        "this is the served model name.",
        min_length=1,
    )
    base_url: str | None = Field(
        default=None,
        description="Base URL of the OpenAI-compatible API (e.g. http://vllm:8000/v1). "
        "Required when engine is `openai`.",
    )
    api_key_env: str | None = Field(
        default=None,
        description="Name of the environment variable that holds the API key "
        "(in Kubernetes, mounted from a Secret). The key itself never appears in a spec.",
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto",
        description="Weights dtype for `transformers` (auto: float32 on CPU, bfloat16 on GPU).",
    )
    device: str = Field(
        default="auto", description="Torch device for `transformers`: auto, cpu, cuda, cuda:N."
    )
    mixed_precision: Literal["no", "bf16"] = Field(
        default="no",
        description="`bf16`: prefill, scoring and training passes of a `transformers` model run "
        "their matrix products in bfloat16 (autocast; weights keep `dtype`, decoding and "
        "log-probs stay in it). About 2x faster on CPUs with AVX512-BF16/AMX; falls back to "
        "`no` with a warning where bfloat16 is not native.",
    )
    max_concurrency: int = Field(
        default=16,
        ge=1,
        le=4096,
        description="Most requests in flight at once to an `openai` server.",
    )
    timeout_s: float = Field(
        default=600.0,
        gt=0,
        description="Per-request timeout in seconds (reasoning models can think for minutes).",
    )
    max_retries: int = Field(
        default=5,
        ge=0,
        le=20,
        description="Retries with jittered exponential back-off on transport errors, 429 and 5xx.",
    )
    max_batch_size: int = Field(
        default=8,
        ge=1,
        le=1024,
        description="Most sequences the `transformers` backend runs in one batch.",
    )
    max_batch_wait_ms: float = Field(
        default=0.0,
        ge=0,
        le=10_000,
        description="How long a judge waits for more requests to fill a batch once one is "
        "queued. 0: never wait (batches still fill while the model is busy); raise it when "
        "clients send the items of a group one request at a time.",
    )
    max_queue: int = Field(
        default=1024,
        ge=1,
        le=1_000_000,
        description="Most items queued per judge; beyond it requests get RESOURCE_EXHAUSTED "
        "with a retry-after hint (back-pressure instead of unbounded memory).",
    )
    context_length: int | None = Field(
        default=None,
        ge=16,
        description="Override of the model's context length in tokens "
        "(default: read from the model/server).",
    )

    score_top_logprobs: int = Field(
        default=20,
        ge=1,
        le=1000,
        description="Alternatives an `openai` server is asked for at the score position. A "
        "score token outside them counts as probability 0, which biases the expected score "
        "towards the likely scores; ask for more where the server allows it (vLLM caps it at "
        "its --max-logprobs, default 20; llama.cpp's server has no cap).",
    )
    extra_body: dict[str, Any] = Field(
        default_factory=dict,
        description="Extra fields sent in every request body to an `openai` server, for "
        "server-specific sampling switches (e.g. llama.cpp's repeat_penalty: 1.0). They can "
        "add to the request but never override a field judgelab sets itself.",
    )

    @model_validator(mode="after")
    def _check_backend_fields(self) -> ModelSpec:
        issues: list[Issue] = []
        if self.engine == "openai" and not self.base_url:
            issues.append(
                Issue(("base_url",), self.base_url, "base_url is required when engine is 'openai'")
            )
        if self.engine == "openai" and self.name.startswith("builtin:"):
            issues.append(
                Issue(
                    ("name",),
                    self.name,
                    "a builtin: model runs in-process; use engine 'transformers', "
                    "or give the served model name",
                )
            )
        elif self.name.startswith("builtin:"):
            builtin = self.name.removeprefix("builtin:")
            if builtin not in BUILTIN_MODELS:
                available = ", ".join(BUILTIN_MODELS)
                issues.append(
                    Issue(
                        ("name",),
                        self.name,
                        f"unknown builtin model {builtin!r}; available: {available}",
                    )
                )
        raise_issues(issues)
        return self
