"""``%ftpe export NAME PATH --merged``: an adapter folded into a copy of its base, saved as a standalone
transformers model (safetensors) that ``AutoModelForCausalLM.from_pretrained`` loads with no peft and no
ftpe_magics. The base in the session is not touched: the merge happens in a copy, and the folder is written
atomically, with the same rules as ``%ftpe save`` (a new or empty folder, or an earlier save of ours).
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

from ..errors import FtpeError
from ..model.placement import is_quantized
from ..model.scoped import quiet_library_notices
from .files import META, save_folder
from .registry import Adapter, attach


def check_mergeable(adapter: Adapter, base_model) -> None:
    """What cannot become a plain causal LM, said before a copy of the model is made."""
    if adapter.head is not None:
        raise FtpeError(f"{adapter.name!r} predicts with a classification head ({adapter.method}), which a causal "
                        f"language model folder cannot hold; %ftpe save {adapter.name} PATH keeps it.")
    if adapter.method == "prompt-tuning":
        raise FtpeError(f"{adapter.name!r} is a soft prompt (an input, not a weight): there is nothing to merge. "
                        f"%ftpe save {adapter.name} PATH keeps it.")
    if adapter.model is None and is_quantized(base_model):
        raise FtpeError("The base model is quantised; merging into 4/8-bit weights would lose the adapter's "
                        "precision. Load the model unquantised (%ftpe load MODEL), then export.")


def merged_model(base_model, adapter: Adapter):
    """A standalone model with the adapter's weights folded in (a trained copy is already one)."""
    if adapter.model is not None:
        return adapter.model
    with quiet_library_notices():
        wrapper = attach(copy.deepcopy(base_model), adapter)
        return wrapper.merge_and_unload()


def export_merged(base_model, tokenizer, adapter: Adapter, path: str | os.PathLike) -> tuple[Path, bool]:
    """Write ``adapter`` merged into a copy of ``base_model``, with the tokenizer; returns the folder and whether
    an earlier export there was replaced."""
    check_mergeable(adapter, base_model)
    model = merged_model(base_model, adapter)

    def write(staging: Path) -> None:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        (staging / META).write_text(json.dumps({**adapter.metadata(), "method": "full", "merged_from": adapter.method},
                                               indent=2))

    return save_folder(path, write)
