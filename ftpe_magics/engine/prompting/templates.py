r"""Templates: ``{name}`` filled from a namespace, and one-example templates for few-shot and fine-tuning.

Only a brace pair around a plain identifier is a field, so JSON, code and set literals in a prompt
(``{"a": 1}``, ``{x + 1}``) pass through untouched; ``{{`` and ``}}`` always stand for one literal
brace, as in ``str.format``. Values are inserted with ``str()``: a template cannot call, index or
look up attributes, which keeps a shared notebook's prompts safe to run.

``Review: {text}\nSentiment: {label}`` is both a demonstration (label filled) and a query (cut at
``{label}``; the label is then scored as the continuation ``" positive"``), so prompting and
fine-tuning see exactly the same text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import FtpeError, check_text, did_you_mean

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
        value = str(values[name])
        check_text(value, f"{{{name}}}")
        return value

    return _TOKEN.sub(replace, template)


def unescape_newlines(spec: str) -> str:
    r"""One-line specs (``%%compare``) write a newline as ``\n``; ``\\n`` keeps a literal backslash-n."""
    return re.sub(r"\\\\|\\n", lambda m: "\\" if m.group(0) == "\\\\" else "\n", spec)

LABEL_FIELD = "label"


@dataclass(frozen=True)
class ExampleTemplate:
    """A one-example template split into the part before the label and the text joining them."""

    template: str
    instructions: str = ""

    @classmethod
    def from_body(cls, body: str) -> ExampleTemplate:
        """Cell body: the last paragraph holding a field is the example; anything above is instructions."""
        body = body.strip("\n")
        paragraphs = body.split("\n\n")
        for index in range(len(paragraphs) - 1, -1, -1):
            if template_fields(paragraphs[index]):
                return cls("\n\n".join(paragraphs[index:]), "\n\n".join(paragraphs[:index]).strip())
        raise FtpeError("The template has no {field}: write one example, e.g. Review: {text}\\nSentiment: {label}")

    @property
    def has_label(self) -> bool:
        return LABEL_FIELD in template_fields(self.template)

    def split(self) -> tuple[str, str]:
        """(context template, separator before the label); the label must end the template."""
        marker = "{" + LABEL_FIELD + "}"
        if not self.has_label:
            return self.template, " "
        before, _, after = self.template.rpartition(marker)
        if after.strip():
            raise FtpeError("{label} must be the last thing in the template (it is scored where it stands); "
                            f"move {after.strip()!r} before it.")
        context = before.rstrip(" ")
        return context, before[len(context):]

    def demo(self, row: Mapping[str, Any], label: str) -> str:
        if not self.has_label:
            return f"{fill(self.template, row)} {label}"
        return fill(self.template, {**row, LABEL_FIELD: label})

    def query(self, row: Mapping[str, Any]) -> str:
        context, _ = self.split()
        return fill(context, row)

    def prompt(self, row: Mapping[str, Any]) -> str:
        """The instructions and the query: what a model reads before the answer, with no demonstrations."""
        return assemble(self.instructions, [], self.query(row))

    def continuation(self, label: str) -> str:
        _, separator = self.split()
        return f"{separator}{label}"


def assemble(instructions: str, demos: list[str], query: str) -> str:
    return "\n\n".join(part for part in [instructions, *demos, query] if part)


def formatted_pair(tokenizer, template: ExampleTemplate, row: Mapping[str, Any], label: str | None,
                   chat: bool) -> tuple[str, str, bool]:
    """(context, answer, add_special_tokens) as fine-tuning trains and scores them.

    Raw: the template's own text, the label where ``{label}`` stands. Chat: the query as the user
    turn through the tokenizer's chat template, the bare label as the assistant's answer.
    """
    query = template.prompt(row)
    if not chat:
        return query, template.continuation(label) if label is not None else "", True
    from ..inference.generation import render_prompts  # generation imports templates: import at call time

    rendered, _ = render_prompts(tokenizer, [query], None, raw=False)
    return rendered[0], label or "", False


def scoring_inputs(tokenizer, template: ExampleTemplate, rows: list[Mapping[str, Any]], labels: list[str],
                   chat: bool) -> tuple[list[str], list[str], bool]:
    """(contexts, one continuation per label, add_special_tokens) to score ``rows`` in a fine-tuning format."""
    pairs = [formatted_pair(tokenizer, template, row, None, chat) for row in rows]
    continuations = [formatted_pair(tokenizer, template, rows[0], label, chat)[1] for label in labels]
    return [context for context, _, _ in pairs], continuations, pairs[0][2]
