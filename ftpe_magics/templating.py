"""Prompt templates: ``{name}`` is filled from a namespace, and nothing is ever evaluated.

Only a brace pair around a plain identifier is a field, so JSON, code and set literals in a prompt
(``{"a": 1}``, ``{x + 1}``) pass through untouched; ``{{`` and ``}}`` always stand for one literal
brace, as in ``str.format``. Values are inserted with ``str()``: a template cannot call, index or
look up attributes, which keeps a shared notebook's prompts safe to run.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .errors import FtpeError, did_you_mean

_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")


def template_fields(template: str) -> list[str]:
    """Field names in order of first appearance (``{{x}}`` is a literal, not a field)."""
    seen: dict[str, None] = {}
    for match in _TOKEN.finditer(template):
        if match.group(1):
            seen.setdefault(match.group(1), None)
    return list(seen)


def fill(template: str, values: Mapping[str, Any], *, skip: frozenset[str] = frozenset()) -> str:
    """Fill every field from ``values``; fields in ``skip`` are kept as ``{name}`` for a later pass."""

    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "{{":
            return "{"
        if token == "}}":
            return "}"
        name = match.group(1)
        if name in skip:
            return token
        if name not in values:
            visible = [key for key in values if not key.startswith("_")]
            raise FtpeError(f"Unknown template variable {{{name}}}.{did_you_mean(name, visible)}"
                            f" Define {name} in the notebook, or write {{{{{name}}}}} for literal braces.")
        return str(values[name])

    return _TOKEN.sub(replace, template)


def unescape_newlines(spec: str) -> str:
    r"""One-line specs (``%%compare``) write a newline as ``\n``; ``\\n`` keeps a literal backslash-n."""
    return re.sub(r"\\\\|\\n", lambda m: "\\" if m.group(0) == "\\\\" else "\n", spec)
