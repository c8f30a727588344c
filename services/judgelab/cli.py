"""The `judgelab` command line.

Heavy modules (torch, transformers, pydantic models) are imported inside the
commands, never at module level: `judgelab --help` must stay well under a second.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(
    name="judgelab",
    help="Controlled studies of LLM judges in RL post-training: does your judge teach the "
    "policy, or get gamed?",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _fail(message: str, code: int = 1) -> None:
    typer.echo(message, err=True)
    raise typer.Exit(code)


@app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(help="Experiment YAML file(s) to check.")],
) -> None:
    """Check experiment files: one line per problem (field path, bad value, what is allowed)."""
    from judgelab.spec import SpecError, load_experiment
    from judgelab.units.baseline_answers import check_baseline_file

    failed = 0
    for path in files:
        try:
            experiment = load_experiment(path)
            check_baseline_file(experiment, path)
        except SpecError as err:
            failed += 1
            typer.echo(str(err), err=True)
            continue
        typer.echo(f"{path}: ok (experiment {experiment.metadata.name!r})")
    if failed:
        raise typer.Exit(1)


@app.command()
def crd(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file instead of stdout.")
    ] = None,
) -> None:
    """Print the Experiment CustomResourceDefinition generated from the spec models."""
    from judgelab.crd import render_crd_yaml

    text = render_crd_yaml()
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {output}", err=True)


@app.command()
def models(
    prepare: Annotated[
        bool,
        typer.Option("--prepare", help="De-quantize and cache the built-in models now."),
    ] = False,
) -> None:
    """List the built-in models and whether their de-quantized cache is ready."""
    from judgelab.engines.base import EngineError
    from judgelab.engines.builtin import builtin_status, ensure_builtin
    from judgelab.spec.model import BUILTIN_MODELS

    for name in BUILTIN_MODELS:
        if prepare:
            try:
                ensure_builtin(name)
            except EngineError as err:
                _fail(f"{name}: {err}")
        status = builtin_status(name)
        cached = (
            f"{status.cached_path} ({status.cached_bytes / 2**20:.0f} MiB)"
            if status.cached_path
            else "not cached (run `judgelab models --prepare`)"
        )
        typer.echo(f"builtin:{name}")
        typer.echo(f"  package: {status.package} {status.package_version or '(not installed)'}")
        typer.echo(f"  gguf:    {status.gguf_path or '-'}")
        typer.echo(f"  cache:   {cached}")


@app.command()
def generate(
    prompt: Annotated[str, typer.Argument(help="The user message.")],
    model: Annotated[str, typer.Option(help="Model name (see ModelSpec.name).")] = (
        "builtin:smollm2-135m-instruct"
    ),
    engine: Annotated[str, typer.Option(help="transformers or openai.")] = "transformers",
    base_url: Annotated[
        str | None, typer.Option(help="OpenAI-compatible base URL (engine openai).")
    ] = None,
    max_new_tokens: Annotated[int, typer.Option(min=1)] = 128,
    temperature: Annotated[float, typer.Option(min=0.0, help="0 = greedy.")] = 0.0,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Sample one answer from a model: a smoke test for an engine and a model spec."""
    from pydantic import ValidationError

    from judgelab.engines import ChatMessage, EngineError, SamplingParams, build_engine
    from judgelab.spec import ModelSpec

    if not prompt.strip():
        _fail("prompt: empty — give the user message to answer")
    try:
        spec = ModelSpec.model_validate({"engine": engine, "name": model, "base_url": base_url})
    except ValidationError as err:
        problems = [e["msg"].removeprefix("Value error, ") for e in err.errors()]
        _fail("model: " + "; ".join(problems))
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
    try:
        backend = build_engine(spec)
        result = backend.generate([[ChatMessage("user", prompt)]], params)[0]
    except EngineError as err:
        _fail(f"{spec.name}: {err}")
    typer.echo(result.text)
    typer.echo(
        f"[{result.completion_tokens} tokens, finish {result.finish_reason}, "
        f"mean log-prob {sum(result.logprobs) / max(len(result.logprobs), 1):.3f}]",
        err=True,
    )


@app.command()
def serve(
    service: Annotated[
        str, typer.Argument(help="judge-pool, gold-annotator or rollout-generator.")
    ],
    experiment: Annotated[Path, typer.Argument(help="Experiment YAML file.")],
    host: Annotated[str, typer.Option(help="Address to bind (0.0.0.0 in a pod).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="gRPC port; 0: any free one.")] = 0,
    metrics_port: Annotated[
        int, typer.Option(min=-1, max=65535, help="/metrics port; 0: any free one; -1: off.")
    ] = 0,
    judge: Annotated[
        list[str] | None, typer.Option(help="Serve only this judge (repeatable; judge-pool).")
    ] = None,
    grace_s: Annotated[float, typer.Option(min=0, help="Seconds to finish in-flight work.")] = 30,
    redis_url: Annotated[
        str | None,
        typer.Option(envvar="REDIS_URL", help="Also consume the experiment's Redis streams "
                     "(default: spec.runtime.redis_url; unset: gRPC only)."),
    ] = None,
    tls_cert: Annotated[Path | None, typer.Option(
        help="Server certificate chain, PEM; with --tls-key serves TLS "
             "(env JUDGELAB_TLS_CERT_FILE).")] = None,
    tls_key: Annotated[Path | None, typer.Option(
        help="Server private key, PEM (env JUDGELAB_TLS_KEY_FILE).")] = None,
    tls_client_ca: Annotated[Path | None, typer.Option(
        help="CA of client certificates: mutual TLS (env JUDGELAB_TLS_CLIENT_CA_FILE).")] = None,
    api_tokens: Annotated[Path | None, typer.Option(
        help="Client name -> bearer token: YAML file or mounted Secret directory; turns auth "
             "on (env JUDGELAB_API_TOKENS).")] = None,
    rate_limit: Annotated[float | None, typer.Option(
        help="Requests/s per client (env JUDGELAB_RATE_LIMIT_PER_S).")] = None,
    rate_burst: Annotated[int | None, typer.Option(
        help="Rate-limit burst per client (env JUDGELAB_RATE_LIMIT_BURST).")] = None,
    max_concurrent: Annotated[int | None, typer.Option(
        help="Calls in flight per client (env JUDGELAB_MAX_CONCURRENT_PER_CLIENT).")] = None,
    max_request_bytes: Annotated[int | None, typer.Option(
        help="Largest request accepted, bytes (env JUDGELAB_MAX_REQUEST_BYTES).")] = None,
    claim_idle_ms: Annotated[int | None, typer.Option(
        min=100, envvar="JUDGELAB_CLAIM_IDLE_MS",
        help="Take over stream messages another consumer has held unacknowledged this long, ms "
             "(default: spec.runtime.queues: 60 s judge pool, 600 s gold annotator and "
             "rollout generator).")] = None,
    redis_wait_s: Annotated[float | None, typer.Option(
        min=0, envvar="JUDGELAB_REDIS_WAIT_S",
        help="Seconds to wait for Redis at startup before failing (default: "
             "spec.runtime.queues.redis_wait_s, 60).")] = None,
) -> None:
    """Run a judgelab service until SIGTERM; prints one JSON line with its ports once ready."""
    from judgelab.queues import RedisUnavailable
    from judgelab.spec import SpecError, load_experiment

    if service not in SERVICES:
        _fail(f"service: {service!r} — must be one of {', '.join(SERVICES)}")
    try:
        spec = load_experiment(experiment)
    except SpecError as err:
        _fail(str(err))
    options = {"host": host, "port": port, "grace_s": grace_s,
               "metrics_port": None if metrics_port < 0 else metrics_port,
               "redis_url": redis_url or spec.spec.runtime.redis_url,
               "claim_idle_ms": claim_idle_ms, "redis_wait_s": redis_wait_s}
    from judgelab.serving.security import security_from_flags

    try:
        options["security"] = security_from_flags({
            "tls_cert": tls_cert, "tls_key": tls_key, "tls_client_ca": tls_client_ca,
            "tokens": api_tokens, "rate_per_s": rate_limit, "burst": rate_burst,
            "max_concurrent": max_concurrent, "max_request_bytes": max_request_bytes})
        SERVICES[service](spec, options, judge)
    except (ValueError, OSError, RedisUnavailable) as err:
        _fail(f"{service}: {err}")


def _serve_judge_pool(spec: Any, options: dict[str, Any], judges: list[str] | None) -> None:
    from judgelab.judge_pool.main import ServeOptions, serve_judge_pool

    chosen = frozenset(judges) if judges else None
    serve_judge_pool(spec, ServeOptions(**options, judges=chosen))


def _serve_gold_annotator(spec: Any, options: dict[str, Any], judges: list[str] | None) -> None:
    from judgelab.annotator.main import ServeOptions, serve_gold_annotator

    if judges:
        raise ValueError("--judge is for the judge pool; the gold annotator serves the gold judge")
    serve_gold_annotator(spec, ServeOptions(**options))


def _serve_rollout_generator(spec: Any, options: dict[str, Any], judges: list[str] | None) -> None:
    from judgelab.rollout.main import ServeOptions, serve_rollout_generator

    if judges:
        raise ValueError("--judge is for the judge pool; the rollout generator serves every arm")
    serve_rollout_generator(spec, ServeOptions(**options))


SERVICES: dict[str, Callable[[Any, dict[str, Any], list[str] | None], None]] = {
    "judge-pool": _serve_judge_pool,
    "gold-annotator": _serve_gold_annotator,
    "rollout-generator": _serve_rollout_generator,
}


@app.command()
def run(
    experiment: Annotated[
        Path | None, typer.Argument(help="Experiment YAML file (not with --resume).")
    ] = None,
    resume: Annotated[
        Path | None, typer.Option(help="Continue the study in this run directory.")
    ] = None,
    runs_dir: Annotated[
        Path | None,
        typer.Option(help="Parent of the run directory (default: the spec's runtime.run_dir)."),
    ] = None,
) -> None:
    """Run a whole study on this machine: Annotate, TrainJudges, TrainPolicy, Evaluate, report."""
    from judgelab.spec import SpecError

    if (experiment is None) == (resume is None):
        _fail("give an experiment file, or --resume RUN_DIR (not both)", 2)
    from judgelab.runtime.launch import resume_run, start_run
    from judgelab.runtime.runners import RUNNERS

    try:
        if resume is not None:
            code = resume_run(resume, RUNNERS)
        else:
            assert experiment is not None
            code = start_run(experiment, runs_dir, RUNNERS)
    except SpecError as err:
        _fail(str(err), 2)
    raise typer.Exit(code)


@app.command()
def status(
    run_dir: Annotated[Path, typer.Argument(help="A run directory (holds state.json).")],
    as_json: Annotated[
        bool, typer.Option("--json", help="The raw phase state (state.json) instead of text.")
    ] = False,
) -> None:
    """Show a local run: its phase, each stage's units and their state, services and arms."""
    import json

    from judgelab.runtime.errors import NotARunDir
    from judgelab.runtime.status_view import load_status, render_status

    try:
        state = load_status(run_dir)
    except NotARunDir as err:
        _fail(str(err), err.exit_code)
    if as_json:
        typer.echo(json.dumps(state.to_dict(), indent=1, sort_keys=True))
    else:
        typer.echo(render_status(run_dir, state), nl=False)


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="A run directory (arms/, evaluate/, ...).")],
    margin: Annotated[
        float,
        typer.Option(
            min=0.0, max=0.99, help="Hacking-onset margin, as a share of the score scale's span."
        ),
    ] = 0.05,
    resamples: Annotated[int, typer.Option(min=1, help="Bootstrap resamples.")] = 1000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
) -> None:
    """Write the study report (report.md, report.html, report/*.png, results.json)."""
    from judgelab.evaluation.report import ReportInputError, ReportOptions, build_report

    options = ReportOptions(
        onset_margin_fraction=margin, bootstrap_resamples=resamples, bootstrap_seed=seed
    )
    try:
        written = build_report(run_dir, options)
    except ReportInputError as err:
        _fail(str(err))
    for path in written.paths():
        typer.echo(str(path))


@app.command()
def judge(
    input_file: Annotated[Path, typer.Argument(help="JSONL: one {id, prompt, response} a line.")],
    judge_name: Annotated[str, typer.Option("--judge", help="Judge to score with.")],
    address: Annotated[str, typer.Option(
        envvar="JUDGELAB_JUDGE_POOL_ADDRESS", help="host:port of the judge pool.")],
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write the scores here (default: stdout).")] = None,
    chunk_size: Annotated[int, typer.Option(min=1, help="Samples per request.")] = 32,
    max_in_flight: Annotated[int, typer.Option(min=1, help="Requests at once.")] = 2,
    timeout_s: Annotated[float, typer.Option(min=0.001, help="Deadline per request.")] = 120,
    experiment: Annotated[str, typer.Option(help="Experiment name sent with calls.")] = "",
    tls: Annotated[bool, typer.Option(help="TLS with the system's root CAs.")] = False,
    ca_file: Annotated[Path | None, typer.Option(help="CA to verify the server (TLS).")] = None,
    cert_file: Annotated[Path | None, typer.Option(help="Client certificate (mTLS).")] = None,
    key_file: Annotated[Path | None, typer.Option(help="Client key (mTLS).")] = None,
    server_name: Annotated[str | None, typer.Option(help="Name the server cert has.")] = None,
    token_file: Annotated[Path | None, typer.Option(
        help="File with the bearer token (or env JUDGELAB_CLIENT_TOKEN).")] = None,
    progress: Annotated[bool, typer.Option(help="Progress bar on stderr.")] = True,
) -> None:
    """Score a JSONL file with a running judge pool; one JSON result a line, in input order."""
    import os

    from judgelab.client.channel import ChannelConfig
    from judgelab.client.judge_command import JudgeCommandError, JudgeJob, run_judge_job

    try:
        channel = ChannelConfig(
            address, tls=tls, ca_file=ca_file, cert_file=cert_file, key_file=key_file,
            server_name=server_name, token_file=token_file,
            token=None if token_file else os.environ.get("JUDGELAB_CLIENT_TOKEN") or None)
        written = run_judge_job(JudgeJob(
            input_file, output, judge_name, channel, chunk_size, max_in_flight, timeout_s,
            experiment, progress))
    except ValueError as err:  # inconsistent TLS / token options
        _fail(str(err), 2)
    except JudgeCommandError as err:
        _fail(str(err), err.exit_code)
    typer.echo(f"scored {written} samples with {judge_name}" +
               (f" -> {output}" if output else ""), err=True)


@app.command()
def version() -> None:
    """Print the judgelab version."""
    from judgelab import __version__

    typer.echo(__version__)


def _show_progress_logs() -> None:
    """judgelab's own INFO lines (e.g. the one-time model de-quantization) go to stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("judgelab: %(message)s"))
    logger = logging.getLogger("judgelab")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def main() -> None:
    _show_progress_logs()
    app()


if __name__ == "__main__":
    main()
