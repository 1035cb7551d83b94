"""Scores for generation tasks: ``metric(prediction, reference) -> float`` in [0, 1]."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import FtpeError

Metric = Callable[[str, str], float]


def _norm(text: str) -> str:
    return " ".join(str(text).lower().strip().strip(".!?\"'").split())


def exact_match(prediction: str, reference: str) -> float:
    return float(_norm(prediction) == _norm(reference))


def contains(prediction: str, reference: str) -> float:
    return float(_norm(reference) in _norm(prediction))


def regex_match(prediction: str, reference: str) -> float:
    """The reference is a regular expression that must match somewhere in the prediction."""
    return float(re.search(reference, prediction, flags=re.IGNORECASE) is not None)


def token_f1(prediction: str, reference: str) -> float:
    predicted, expected = _norm(prediction).split(), _norm(reference).split()
    common = sum((Counter(predicted) & Counter(expected)).values())
    if not predicted or not expected or not common:
        return float(predicted == expected)
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


BUILTIN_METRICS: dict[str, Metric] = {"exact": exact_match, "contains": contains, "regex": regex_match,
                                      "f1": token_f1}


def resolve_metric(name_or_fn: str | Metric, namespace: Mapping[str, Any] | None = None) -> tuple[str, Metric]:
    """A built-in metric by name, a notebook function by name, or a callable."""
    if callable(name_or_fn):
        return getattr(name_or_fn, "__name__", "metric"), name_or_fn
    if name_or_fn in BUILTIN_METRICS:
        return name_or_fn, BUILTIN_METRICS[name_or_fn]
    candidate = (namespace or {}).get(name_or_fn)
    if callable(candidate):
        return name_or_fn, candidate
    raise FtpeError(f"Unknown metric {name_or_fn!r}: use {', '.join(BUILTIN_METRICS)} or the name of a notebook "
                    "function f(prediction, reference) -> float.")


def apply_metric(metric: Metric, name: str, prediction: str, reference: str) -> float:
    """The metric's score, which must be a number in [0, 1]: accuracy is its mean, McNemar counts >= 0.5 as right."""
    try:
        score = float(metric(prediction, reference))
    except Exception as error:  # the user's function: say which call failed, keep it short
        raise FtpeError(f"Metric {name} failed on prediction={prediction[:40]!r}, reference={reference[:40]!r}: "
                        f"{type(error).__name__}: {error}") from None
    if not 0.0 <= score <= 1.0:  # NaN fails this too
        raise FtpeError(f"Metric {name} returned {score} for prediction={prediction[:40]!r}, "
                        f"reference={reference[:40]!r}; a metric returns a score between 0 and 1.")
    return score
