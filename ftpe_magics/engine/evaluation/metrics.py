"""Scores for generation tasks: ``metric(prediction, reference)`` gives a number in [0, 1], or a dict of named
numbers in [0, 1] (the first is the condition's accuracy, the others become columns of the table)."""

from __future__ import annotations

import functools
import importlib.util
import re
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import FtpeError
from .structured import json_exact, json_f1

Metric = Callable[[str, str], "float | Mapping[str, float]"]


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


@functools.lru_cache(maxsize=1)
def _rouge_scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure as rouge-score computes it (the package the ROUGE papers' numbers are reproduced with;
    Porter stemming on, as in its own examples)."""
    return _rouge_scorer().score(reference, prediction)["rougeL"].fmeasure


@functools.lru_cache(maxsize=1)
def _chrf():
    from sacrebleu.metrics import CHRF

    return CHRF()


def chrf(prediction: str, reference: str) -> float:
    """Sentence chrF (character n-gram F-score, beta 2) as sacrebleu computes it, scaled from 0-100 to 0-1."""
    return _chrf().sentence_score(prediction, [reference]).score / 100


def similarity(prediction: str, reference: str) -> float:
    """Cosine of the session model's mean-pooled hidden states of output and reference (negative cosines count
    as 0). It needs the model, so the evaluator computes it for all outputs at once; this stands for it in the
    metric table and in cache keys."""
    raise FtpeError("--metric similarity is computed by a comparison, with the session's model.")


def judge(prediction: str, reference: str) -> float:
    """A model's grade of the output against the reference or a rubric (see :mod:`.judge`). It needs the model
    and the judge's template, so the evaluator computes it; this stands for it in the table and in cache keys."""
    raise FtpeError("--metric judge is computed by a comparison, with the session's model.")


# the library each text metric needs: optional, so a missing one is one line with the extra that installs it
NEEDS = {"rouge-l": "rouge_score", "chrf": "sacrebleu"}

BUILTIN_METRICS: dict[str, Metric] = {"exact": exact_match, "contains": contains, "regex": regex_match,
                                      "f1": token_f1, "json": json_f1, "json-exact": json_exact,
                                      "rouge-l": rouge_l, "chrf": chrf, "similarity": similarity, "judge": judge}
STRUCTURED_METRICS = ("json", "json-exact")  # their report says how many outputs parsed and why the others did not


def resolve_metric(name_or_fn: str | Metric, namespace: Mapping[str, Any] | None = None) -> tuple[str, Metric]:
    """A built-in metric by name, a notebook function by name, or a callable."""
    if callable(name_or_fn):
        return getattr(name_or_fn, "__name__", "metric"), name_or_fn
    if name_or_fn in BUILTIN_METRICS:
        if name_or_fn in NEEDS and importlib.util.find_spec(NEEDS[name_or_fn]) is None:
            raise FtpeError(f"--metric {name_or_fn} needs {NEEDS[name_or_fn].replace('_', '-')}: pip install "
                            "'ftpe_magics[text]'.")
        return name_or_fn, BUILTIN_METRICS[name_or_fn]
    candidate = (namespace or {}).get(name_or_fn)
    if callable(candidate):
        return name_or_fn, candidate
    raise FtpeError(f"Unknown metric {name_or_fn!r}: use {', '.join(BUILTIN_METRICS)} or the name of a notebook "
                    "function f(prediction, reference) -> float (or a dict of named floats).")


def apply_metric(metric: Metric, name: str, prediction: str, reference: str) -> dict[str, float]:
    """The metric's scores by name, each a number in [0, 1]: the first is the accuracy (its mean; the paired test
    reads it per example), the others are reported beside it. A metric that returns a number is ``{name: number}``."""
    try:
        value = metric(prediction, reference)
        scores = {str(key): float(score) for key, score in value.items()} if isinstance(value, Mapping) \
            else {name: float(value)}
    except Exception as error:  # the user's function: say which call failed, keep it short
        raise FtpeError(f"Metric {name} failed on prediction={prediction[:40]!r}, reference={reference[:40]!r}: "
                        f"{type(error).__name__}: {error}") from None
    if not scores:
        raise FtpeError(f"Metric {name} returned an empty dict; return a number, or a dict whose first entry is the "
                        "score.")
    for key, score in scores.items():
        if not 0.0 <= score <= 1.0:  # NaN fails this too
            shown = f"{score}" if isinstance(value, (int, float)) else f"{key}={score}"
            raise FtpeError(f"Metric {name} returned {shown} for prediction={prediction[:40]!r}, "
                            f"reference={reference[:40]!r}; a metric returns scores between 0 and 1.")
    return scores
