"""Adapters on disk: the standard peft folder (or a transformers folder for a trained copy) plus
``ftpe_adapter.json`` with the template it was trained on.

Saving never deletes or moves anything it did not write: it writes into a new folder, an empty
one, or one that holds exactly what an earlier save wrote, and refuses anything else. Each save
writes ``ftpe_manifest.json``, the name and SHA-256 of every file it wrote; a later save replaces
the folder only when every file in it is in that manifest with the same digest, so a file the user
added or edited (a ``README.md`` of their own) is never counted as ours. What it writes names the
base model by its id and a weight fingerprint, never by a path of this machine.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..errors import FtpeError
from ..model.loading import display_path
from ..prompting.templates import ExampleTemplate
from .fingerprint import weights_fingerprint
from .registry import Adapter

META = "ftpe_adapter.json"
MANIFEST = "ftpe_manifest.json"  # what a save wrote: {"files": {name: sha256}}
# the files an earlier version (0.3.0, no manifest) wrote into the run store's own adapter folders
_LEGACY = re.compile(r"^(adapter_config\.json|adapter_model\.safetensors|config\.json|generation_config\.json|"
                     r"model(-\d+-of-\d+)?\.safetensors|model\.safetensors\.index\.json|head\.safetensors|"
                     + re.escape(META) + r")$")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _manifest(folder: Path) -> dict[str, str] | None:
    try:
        files = json.loads((folder / MANIFEST).read_text()).get("files")
    except (OSError, ValueError, AttributeError):
        return None
    return files if isinstance(files, dict) else None


def _not_ours(entries: list[Path], folder: Path, legacy_ok: bool) -> list[str]:
    """The entries of ``folder`` that no earlier save can be proven to have written (empty: all are ours)."""
    files = _manifest(folder)
    if files is None:
        if legacy_ok and (folder / META).is_file():
            return [e.name for e in entries if e.is_dir() or not _LEGACY.match(e.name)]
        return [e.name for e in entries]
    return [e.name for e in entries if e.name != MANIFEST and
            (e.is_dir() or e.is_symlink() or files.get(e.name) != _sha256(e))]


def _existing(target: Path, shown: str, legacy_ok: bool = False) -> str:
    """What is at ``target`` now: ``new``, ``empty`` or ``ours``; anything else is refused in one line."""
    if not target.exists() and not target.is_symlink():
        return "new"
    if target.is_symlink() or not target.is_dir():
        raise FtpeError(f"{shown} is a file, not a folder; save writes a folder and never replaces a file. "
                        "Choose a new folder name.")
    entries = sorted(target.iterdir())
    if not entries:
        return "empty"
    foreign = _not_ours(entries, target, legacy_ok)
    if not foreign:
        return "ours"
    raise FtpeError(f"{shown} already holds other files ({foreign[0]}{', ...' if len(foreign) > 1 else ''}) that "
                    "no earlier save wrote as they are; save never overwrites them. Choose a new or empty folder.")


def _write_manifest(staging: Path) -> None:
    files = {path.name: _sha256(path) for path in sorted(staging.iterdir()) if path.is_file()}
    (staging / MANIFEST).write_text(json.dumps({"files": files}, indent=2))


def _write(adapter: Adapter, staging: Path) -> None:
    from safetensors.torch import save_file

    if adapter.head is not None:
        save_file(adapter.head.tensors(), staging / "head.safetensors")
    if adapter.model is not None:
        adapter.model.save_pretrained(staging)
    elif adapter.peft_config is not None:
        config = copy.deepcopy(adapter.peft_config)
        config.base_model_name_or_path = adapter.base_model_id or None  # not the machine's cache path
        if getattr(config, "tokenizer_name_or_path", None):
            config.tokenizer_name_or_path = adapter.base_model_id or None
        config.save_pretrained(staging)
        save_file({k: v.contiguous() for k, v in adapter.state.items()}, staging / "adapter_model.safetensors")
    description = {**adapter.metadata(), "fingerprint": weights_fingerprint(adapter)}
    (staging / META).write_text(json.dumps(description, indent=2))


def save_adapter(adapter: Adapter, path: str | os.PathLike, store_owned: bool = False) -> tuple[Path, bool]:
    """Write the adapter atomically; returns the folder and whether an earlier save of ours was replaced.
    ``store_owned``: a folder of the run store's own, where a save of 0.3.0 (no manifest) may be replaced too."""
    return save_folder(path, lambda staging: _write(adapter, staging), store_owned)


def save_folder(path: str | os.PathLike, write: Callable[[Path], None],
                store_owned: bool = False) -> tuple[Path, bool]:
    """Let ``write`` fill a staging folder, then rename it to ``path`` (atomic); only a new folder, an empty one or
    one holding exactly what an earlier save wrote (its manifest) is replaced. Returns the folder and whether an
    earlier save was replaced."""
    target = Path(path).expanduser().absolute()
    shown = display_path(target)
    state = _existing(target, shown, legacy_ok=store_owned)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    except OSError as error:
        raise FtpeError(f"Cannot write to {display_path(target.parent)}: {error.strerror}. Choose a folder you can "
                        "write to.") from None
    try:
        write(staging)
        _write_manifest(staging)
        if state == "ours":  # only our own files are in it (checked above): set aside, swap in, then remove
            previous = Path(tempfile.mkdtemp(prefix=f".{target.name}-previous-", dir=target.parent))
            os.replace(target, previous / "adapter")
            os.replace(staging, target)
            shutil.rmtree(previous, ignore_errors=True)
        else:  # a new name, or an empty folder, which rename(2) replaces
            os.replace(staging, target)
    except OSError as error:
        raise FtpeError(f"Could not save to {shown}: {error.strerror or error}.") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target, state == "ours"


def _metadata(folder: Path) -> dict:
    if not (folder / META).is_file():
        return {}
    try:
        meta = json.loads((folder / META).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise FtpeError(f"{display_path(folder / META)} is not valid JSON ({getattr(error, 'msg', error)}). Fix it, "
                        "or delete it to load the folder as a plain peft adapter (without its template).") from None
    if not isinstance(meta, dict) or ("template" in meta and not isinstance(meta["template"], (str, type(None)))):
        raise FtpeError(f"{display_path(folder / META)} is not an ftpe_magics adapter description.")
    return meta


def _common(meta: dict, name: str) -> dict:
    template = ExampleTemplate(meta["template"], meta.get("instructions", "")) if meta.get("template") else None
    return {"name": name, "template": template, "chat": bool(meta.get("chat", False)),
            "label_set": list(meta.get("label_set", [])), "input_col": meta.get("input_col", "text"),
            "trainable_params": meta.get("trainable_params", 0), "train_seconds": meta.get("train_seconds", 0.0),
            "train_tokens": meta.get("train_tokens", 0),
            "best_metric": meta.get("best_metric"), "steps": meta.get("steps", 0),
            "base_model_id": meta.get("base_model", ""), "base_fingerprint": meta.get("base_fingerprint", "")}


def _peft_adapter(folder: Path, meta: dict, common: dict, device: str) -> Adapter:
    from peft import PeftConfig
    from safetensors.torch import load_file

    weights = folder / "adapter_model.safetensors"
    if not weights.is_file():
        raise FtpeError(f"{display_path(folder)} has no adapter_model.safetensors (only safetensors adapters are "
                        "loaded).")
    try:
        config = PeftConfig.from_pretrained(str(folder))
        state = load_file(str(weights), device=device)
    except Exception as error:  # noqa: BLE001 - a broken config or weights file, whatever the library raises
        raise FtpeError(f"Could not read the adapter in {display_path(folder)}: {str(error).splitlines()[0][:120]}") \
            from None
    peft_type = str(getattr(config.peft_type, "value", config.peft_type))
    method = meta.get("method") or {"LORA": "lora", "IA3": "ia3", "PROMPT_TUNING": "prompt-tuning"}.get(peft_type,
                                                                                                      "lora")
    config.inference_mode = True
    return Adapter(method=method, peft_config=config, state=state, **common)


def _head(folder: Path, meta: dict):
    if not (folder / "head.safetensors").is_file():
        return None
    from safetensors.torch import load_file

    from .heads import ClassifierHead

    return ClassifierHead.from_tensors(load_file(str(folder / "head.safetensors")), meta.get("label_set", []),
                                       meta.get("head_pool") or "mean")


def load_adapter(path: str | os.PathLike, name: str, device: str, base_fingerprint: str) -> Adapter:
    """Read a saved adapter; one trained on another base model (by fingerprint) is refused here, not at use."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise FtpeError(f"No adapter folder at {display_path(folder)}.")
    meta = _metadata(folder)
    common = _common(meta, name)
    if common["base_fingerprint"] and common["base_fingerprint"] != base_fingerprint:
        trained_on = common["base_model_id"] or "another model"
        raise FtpeError(f"The adapter in {display_path(folder)} was trained on {trained_on}, not the model loaded "
                        "now (the weight fingerprints differ). Load that model first.")
    common["head"] = _head(folder, meta)
    if (folder / "adapter_config.json").is_file():
        return _peft_adapter(folder, meta, common, device)
    if (folder / "config.json").is_file():
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(str(folder), use_safetensors=True).to(device).eval()
        return Adapter(method=meta.get("method", "full"), model=model, **common)
    if common["head"] is not None:  # a probe, or a head on the frozen body
        return Adapter(method=meta.get("method", "probe"), **common)
    raise FtpeError(f"{display_path(folder)} holds neither a peft adapter (adapter_config.json) nor a model "
                    "(config.json).")


def describe_adapter(path: str | os.PathLike, name: str) -> Adapter | None:
    """The adapter a folder holds, as its description says, with no weights read: what a cache key needs (its
    fingerprint, template and format). Only a folder whose every file still matches the manifest its save wrote
    vouches for its fingerprint; anything else (an older save, an edited file) is None, and the caller reads the
    weights instead."""
    folder = Path(path)
    files = _manifest(folder)
    try:
        meta = _metadata(folder)
    except FtpeError:
        return None
    if files is None or not meta.get("fingerprint") or META not in files:
        return None
    for file_name, sha in files.items():
        if not (folder / file_name).is_file() or _sha256(folder / file_name) != sha:
            return None
    return Adapter(method=meta.get("method", "lora"), fingerprint=meta["fingerprint"], **_common(meta, name))
