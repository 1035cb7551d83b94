"""Results as plain data and back, and the fingerprints that say when two runs did the same work.

A stored run must rebuild the result object it came from (``%ftpe show``, the result cache, a
re-run diff from an earlier kernel), so each result type has a ``*_data`` / ``*_from_data`` pair
here, next to the fingerprints of data, adapters and the environment that cache keys are made of.
"""

from __future__ import annotations

import dataclasses
import functools
import platform
from datetime import datetime

import torch

from ..config import VERSION
from ..evaluation.evaluator import ConditionResult
from ..inference.generation import GenerationSettings
from ..prompting.prompt_result import PromptResult


@functools.lru_cache(maxsize=1)
def versions() -> dict[str, str]:
    """Library versions that can change a number: part of every record and cache key."""
    from importlib.metadata import version  # peft by its metadata: importing it would import bitsandbytes

    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "peft": version("peft"), "ftpe_magics": VERSION}


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
