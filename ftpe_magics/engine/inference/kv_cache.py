"""The key/value cache under the name the installed transformers uses.

transformers 5.x renamed ``past_key_values`` to ``cache`` (forward keyword and output field) and
warns at every call that uses the old name; the oldest 5.x this package allows knows only the
old one. Asking the output class which field it has picks the current name on every version, so
a scoring cell prints no deprecation warning and keeps working when the old name is removed.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any


@functools.cache
def cache_field() -> str:
    """``cache`` on transformers versions that have it, else ``past_key_values``."""
    from transformers.modeling_outputs import CausalLMOutputWithPast

    names = {item.name for item in dataclasses.fields(CausalLMOutputWithPast)}
    return "cache" if "cache" in names else "past_key_values"


def cache_kwargs(cache: Any) -> dict[str, Any]:
    """The forward keyword that passes ``cache`` in."""
    return {cache_field(): cache}


def output_cache(output: Any) -> Any:
    """The cache a forward pass returned."""
    return getattr(output, cache_field())
