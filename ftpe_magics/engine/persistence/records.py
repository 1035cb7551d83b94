"""Results as plain data and back, and the fingerprints that say when two runs did the same work.

A stored run must rebuild the result object it came from (``%ftpe show``, the result cache, a
re-run diff from an earlier kernel), so each result type has a ``*_data`` / ``*_from_data`` pair
here, next to the fingerprints of data, adapters and the environment that cache keys are made of.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import platform
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import torch

from ..adapters.registry import Adapter
from ..config import VERSION
from ..data.examples import Examples
from ..evaluation.evaluator import ConditionResult
from ..inference.generation import GenerationSettings
from ..model.loading import weight_fingerprint
from ..prompting.prompt_result import PromptResult
from ..prompting.templates import template_fields


def digest(value: Any) -> str:
    """A short, stable hash of any JSON-able value (keys sorted, so dict order does not matter)."""
    text = json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()


def data_fingerprint(data: Examples | None) -> str | None:
    """Every row (inputs, any column a template may use) and the label words as scored."""
    if data is None:
        return None
    return digest({"rows": data.rows, "labels": data.labels, "label_set": data.label_set, "input": data.input_col})


def adapter_fingerprint(adapter: Adapter) -> str:
    """The adapter's weights (all of them for peft and heads, a strided sample for a trained copy) and the
    format it scores in; computed once per adapter object."""
    cached = getattr(adapter, "_fingerprint", None)
    if cached:
        return cached
    parts = hashlib.blake2b(digest_size=12)
    for key, tensor in sorted((adapter.state or {}).items()):
        parts.update(key.encode())
        parts.update(tensor.detach().to("cpu").contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    if adapter.head is not None:
        for key, tensor in sorted(adapter.head.tensors().items()):
            parts.update(key.encode() + tensor.detach().cpu().float().numpy().tobytes())
    if adapter.model is not None:
        parts.update(weight_fingerprint(adapter.model).encode())
    parts.update(digest({k: v for k, v in adapter.metadata().items() if k not in ("train_seconds",)}).encode())
    adapter._fingerprint = parts.hexdigest()
    return adapter._fingerprint


@functools.lru_cache(maxsize=1)
def versions() -> dict[str, str]:
    """Library versions that can change a number: part of every record and cache key."""
    import peft
    import torch
    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "peft": peft.__version__, "ftpe_magics": VERSION}


def namespace_values(templates: list[str], namespace: Mapping[str, Any], columns: set[str]) -> dict[str, str]:
    """Notebook variables a template fills (fields that are not data columns): their values change results."""
    names = {name for text in templates for name in template_fields(text)} - columns - {"label"}
    return {name: repr(namespace[name])[:20000] for name in sorted(names) if name in namespace}


# -- results as data ------------------------------------------------------------------------------------
def prompt_data(result: PromptResult) -> dict:
    data = {f.name: getattr(result, f.name) for f in dataclasses.fields(result) if f.name != "previous"}
    data["settings"] = result.settings.as_dict()
    data["created"] = result.created.isoformat(timespec="seconds")
    data["outputs"] = pack_samples(result.outputs)
    return data


def prompt_from_data(data: dict) -> PromptResult:
    fields = dict(data)
    fields["settings"] = GenerationSettings(**fields["settings"])
    fields["created"] = datetime.fromisoformat(fields["created"])
    fields["outputs"] = unpack_samples(fields["outputs"])
    return PromptResult(**fields)


def condition_data(result: ConditionResult) -> dict:
    data = dataclasses.asdict(result)
    data["samples"] = pack_samples(result.samples)
    return data


def condition_from_data(data: dict) -> ConditionResult:
    return ConditionResult(**{**data, "samples": unpack_samples(data.get("samples"))})


def pack_samples(samples: list[list[str]] | None) -> dict | None:
    """Samples per example as each distinct text once and its index per draw: 100 identical draws of a long
    generation are stored as one text and 100 small numbers, and the order of the draws is kept."""
    if samples is None:
        return None
    table: dict[str, int] = {}
    codes = [[table.setdefault(text, len(table)) for text in row] for row in samples]
    return {"texts": list(table), "codes": codes}


def unpack_samples(packed: dict | list | None) -> list[list[str]] | None:
    """The samples as :func:`pack_samples` stored them (a plain list of lists, as 0.3.0 stored them, too)."""
    if not isinstance(packed, dict):
        return packed
    texts = packed["texts"]
    return [[texts[code] for code in row] for row in packed["codes"]]


def summary_line(result: ConditionResult) -> str:
    if result.interrupted:
        return f"{result.condition}: interrupted"
    return f"{result.condition}: accuracy {result.accuracy:.3f} (n={result.n})"
