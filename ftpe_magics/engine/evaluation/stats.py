"""Statistics for comparing conditions on one held-out set.

Bootstrap intervals say how much an accuracy would move on another sample of the same size, and
McNemar's exact test asks whether two conditions that saw the *same* examples really differ; both
matter more than a point estimate on a few hundred examples.
"""

from __future__ import annotations

from math import comb

import numpy as np


def bootstrap_interval(correct: list[bool] | np.ndarray, resamples: int = 2000, confidence: float = 0.95,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-example values (0/1 outcomes, or paired differences)."""
    values = np.asarray(correct, dtype=float)
    if values.size == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(resamples, values.size))].mean(axis=1)
    tail = (1 - confidence) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


def mcnemar_p(correct_a: list[bool], correct_b: list[bool]) -> float:
    """Exact (binomial) McNemar test on paired outcomes; 1.0 when the two never disagree."""
    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    discordant = only_a + only_b
    if discordant == 0:
        return 1.0
    tail = sum(comb(discordant, i) for i in range(min(only_a, only_b) + 1)) / 2**discordant
    return min(1.0, 2 * tail)


def per_label_scores(predictions: list[str], references: list[str], labels: list[str]) -> dict[str, dict]:
    scores = {}
    for label in labels:
        tp = sum(p == label and r == label for p, r in zip(predictions, references, strict=True))
        predicted = sum(p == label for p in predictions)
        actual = sum(r == label for r in references)
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        scores[label] = {"precision": precision, "recall": recall, "f1": f1, "support": actual}
    return scores


def macro_f1(predictions: list[str], references: list[str], labels: list[str]) -> float:
    present = [label for label in labels if label in references]
    scores = per_label_scores(predictions, references, present)
    return float(np.mean([scores[label]["f1"] for label in present])) if present else float("nan")


def confusion(predictions: list[str], references: list[str], labels: list[str]):
    import pandas as pd

    table = pd.crosstab(pd.Series(references, name="true"), pd.Series(predictions, name="predicted"))
    return table.reindex(index=labels, columns=labels, fill_value=0)


def modal_agreement(samples: list[list[str]]) -> float:
    """Mean share of an example's samples that agree with its most common one (1.0 = always the same)."""
    from collections import Counter

    shares = [Counter(row).most_common(1)[0][1] / len(row) for row in samples if row]
    return float(np.mean(shares)) if shares else float("nan")
