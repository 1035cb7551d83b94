"""Scores for answers that are JSON objects: ``--metric json`` (field-level F1) and ``--metric json-exact``.

A structured answer is right or wrong field by field, not as a string: the same fields in another order are the
same answer, and one wrong value out of four is three quarters right, which a string metric cannot say. So the
first JSON object in the output is parsed (text around it is allowed, and counted), and the answer is compared
with the reference as a multiset of ``(key, value)`` pairs: values compared after whitespace and case
normalisation, a list value as one pair per item (so the order of a list does not matter, its repeats do), a
nested object by its normalised text. An output with no parseable object scores 0 and is not ``valid``; why it
failed is kept, so the report can list the most common failures.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ParsedAnswer:
    """The first JSON object of an output, or why there is none, and whether text surrounded it."""

    value: dict | None
    failure: str | None = None
    surrounded: bool = False


def first_json_object(text: str) -> ParsedAnswer:
    """The first ``{...}`` of ``text`` that parses as a JSON object (decoded with the standard library's own
    parser, from each opening brace in turn)."""
    decoder = json.JSONDecoder()
    start, failure = str(text).find("{"), None
    if start < 0:
        return ParsedAnswer(None, "no JSON object")
    while start >= 0:
        try:
            value, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError as error:
            failure = failure or f"invalid JSON ({error.msg})"
        else:
            if isinstance(value, dict):
                return ParsedAnswer(value, surrounded=bool(text[:start].strip() or text[end:].strip()))
        start = text.find("{", start + 1)
    return ParsedAnswer(None, failure or "no JSON object")


def _normalised(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, ensure_ascii=False).lower()
    return " ".join(str(value).lower().split())


def field_pairs(value: dict) -> Counter:
    """The object as a multiset of (key, value) pairs; a list value gives one pair per item."""
    pairs: Counter = Counter()
    for key, item in value.items():
        for element in (item if isinstance(item, list) else [item]):
            pairs[(_normalised(key), _normalised(element))] += 1
    return pairs


def canonical_answer(text: str) -> str:
    """One string per distinct answer: the object's sorted pairs (so key order, case and spacing do not make two
    samples differ), or the failure for an output that holds none."""
    parsed = first_json_object(text)
    if parsed.value is None:
        return f"<{parsed.failure}>"
    return json.dumps(sorted(field_pairs(parsed.value).elements()), ensure_ascii=False)


def _reference(reference: str) -> dict:
    parsed = first_json_object(reference)
    if parsed.value is None:
        raise ValueError(f"the reference is not a JSON object ({parsed.failure}); --metric json compares objects")
    return parsed.value


def json_f1(prediction: str, reference: str) -> dict[str, float]:
    """Field-level F1 of the output's first JSON object against the reference object; ``valid_rate`` 1 when the
    output held one. Two empty objects agree (F1 1)."""
    parsed, expected = first_json_object(prediction), field_pairs(_reference(reference))
    if parsed.value is None:
        return {"json": 0.0, "valid_rate": 0.0}
    predicted = field_pairs(parsed.value)
    common = sum((predicted & expected).values())
    if not predicted or not expected:
        return {"json": float(predicted == expected), "valid_rate": 1.0}
    precision, recall = common / sum(predicted.values()), common / sum(expected.values())
    f1 = 2 * precision * recall / (precision + recall) if common else 0.0
    return {"json": f1, "valid_rate": 1.0}


def json_exact(prediction: str, reference: str) -> dict[str, float]:
    """1 when the output's first JSON object has exactly the reference's pairs (any key order)."""
    parsed, expected = first_json_object(prediction), field_pairs(_reference(reference))
    if parsed.value is None:
        return {"json-exact": 0.0, "valid_rate": 0.0}
    return {"json-exact": float(field_pairs(parsed.value) == expected), "valid_rate": 1.0}


def parse_report(outputs: list[str], most: int = 3) -> dict[str, Any]:
    """What the report says about the outputs' format: the share that parsed, how many had text around the
    object, and the most common failures with their counts."""
    parsed = [first_json_object(text) for text in outputs]
    failures = Counter(p.failure for p in parsed if p.failure)
    return {"valid": sum(p.value is not None for p in parsed), "surrounded": sum(p.surrounded for p in parsed),
            "failures": failures.most_common(most)}
