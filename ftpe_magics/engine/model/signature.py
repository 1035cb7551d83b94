"""Which weights a load would read, named without reading them.

A comparison answered wholly from the run store needs only the loaded weights' fingerprint (part of every cache
key), and computing that means loading the model: seconds on a small model, minutes on a large one. So each load
with a store on keeps what it produced under a *signature*: the model's id, the names, sizes and modification
times of the files it reads (a GGUF file, a folder's safetensors and config, or the hub cache's snapshot of a hub
id) and the options that change what is loaded. A new kernel computes the signature from file metadata alone and
finds the fingerprint; a file rewritten since has another size or time, so it is a new signature and the model is
loaded as before. Nothing here names a path of the machine: only file names enter the digest.
"""

from __future__ import annotations

from pathlib import Path

from ..digests import digest
from .load_options import LoadOptions
from .loading import ModelSource


def weight_files(source: ModelSource) -> list[Path]:
    """The files whose bytes decide the weights a load of ``source`` gives; empty when they cannot be named
    without network or conversion (a hub id that is not in the local cache)."""
    if source.kind in ("default", "gguf"):
        path = Path(source.location)
        return [path] if path.is_file() else []
    folder = Path(source.location) if source.kind == "folder" else _hub_snapshot(source.location)
    if folder is None or not folder.is_dir():
        return []
    files = sorted(folder.glob("*.safetensors")) + [folder / "config.json"]
    return [path for path in files if path.is_file()]


def _hub_snapshot(repo_id: str) -> Path | None:
    """The local cache's snapshot folder of a hub id (its current ref), or None when it has none."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(repo_id, "config.json")
    return Path(found).parent if isinstance(found, str) else None


def load_signature(source: ModelSource, options: LoadOptions, device: str) -> str | None:
    """A digest of the files a load reads and the options it runs with; None when the files cannot be named."""
    files = weight_files(source)
    if not files:
        return None
    stats = []
    for path in files:
        status = path.stat()
        stats.append([path.name, status.st_size, status.st_mtime_ns])
    described = {"model": source.model_id, "kind": source.kind, "files": stats, "device": device,
                 "dtype": options.dtype, "quantize": options.quantize, "device_map": options.device_map,
                 "max_memory": options.max_memory, "trust_remote_code": options.trust_remote_code}
    return digest(described)
