"""Where a generated answer ends: the rules that stop a row before ``--max-new-tokens`` when what is scored is done.

A metric scores the first non-empty line of an output, or, for a structured metric, the first JSON object,
which may span lines (an instruct model pretty-prints JSON). Generating past that end costs time and changes
nothing scored, so each row stops there; tokens generated per query (a cost column) count up to it.
"""

from __future__ import annotations

import re

import torch
from transformers import StoppingCriteria

STOPS = ("line", "object")  # what a row generates up to: its first line with content, its first JSON object
_LINE_ENDED = re.compile(r"\S[^\n]*\n")


def object_end(text: str) -> int | None:
    """The index just past the first balanced ``{...}`` of ``text`` (braces inside JSON strings not counted), or
    None while it is open or none has begun."""
    start = text.find("{")
    if start < 0:
        return None
    depth, in_string, escaped = 0, False, False
    for index in range(start, len(text)):
        char = text[index]
        if in_string:
            escaped, in_string = (False, True) if escaped else (char == "\\", char != '"')
        elif char == '"':
            in_string = True
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return index + 1
    return None


def answer_done(text: str, stop: str) -> bool:
    """Whether a row's text so far holds all that is scored: its first line with content (``line``); its first
    JSON object, or a line of text with no object begun (``object``: prose that will not become JSON)."""
    if stop == "line":
        return bool(_LINE_ENDED.search(text))
    if "{" in text:
        return object_end(text) is not None
    return bool(_LINE_ENDED.search(text))


def scored_part(text: str, stop: str) -> str:
    """What a metric reads of an output: its first line with content, or up to the end of its first JSON object
    (with the text before it on its line, which the format report counts as text around the object)."""
    if stop == "object" and "{" in text:
        end = object_end(text)
        if end is not None:
            begin = text.rfind("\n", 0, text.find("{")) + 1
            return text[begin:end].strip()
        return text[text.find("{"):].strip()  # an object that never closed: invalid JSON, said as such
    for line in text.strip().splitlines():
        if line.strip():
            return line.strip()
    return ""


class AnswerEnded(StoppingCriteria):
    """Stops each row of a batch once :func:`answer_done` holds for its new text."""

    def __init__(self, tokenizer, width: int, stop: str) -> None:
        self.tokenizer, self.width, self.stop = tokenizer, width, stop

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.BoolTensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.width:], skip_special_tokens=True)
        return torch.tensor([answer_done(text, self.stop) for text in texts], device=input_ids.device)
