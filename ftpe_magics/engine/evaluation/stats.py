"""Statistics for comparing conditions on one held-out set, right at small n.

An accuracy is a proportion: its interval is the exact (Clopper-Pearson) one, which keeps its width at 20/20 and
0/20 where a bootstrap collapses to a point; mean metric scores in [0, 1] get a bootstrap interval. Two conditions
on the *same* examples are compared by paired methods: Newcombe's score interval for the difference of paired
proportions, McNemar's exact test, and McNemar's power to say which gap an eval set can resolve at all.
"""

from __future__ import annotations

from math import comb, sqrt
from statistics import NormalDist

import numpy as np
from scipy.stats import binomtest


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


def is_binary(scores: list[float] | np.ndarray) -> bool:
    values = np.asarray(scores, dtype=float)
    return bool(values.size) and bool(np.isin(values, (0.0, 1.0)).all())


def proportion_interval(successes: int, total: int, confidence: float = 0.95,
                        method: str = "exact") -> tuple[float, float]:
    """Exact (Clopper-Pearson) or Wilson interval of a proportion; both hold at any n, 0/n and n/n included."""
    if total == 0:
        return (float("nan"), float("nan"))
    bounds = binomtest(int(successes), int(total)).proportion_ci(confidence_level=confidence, method=method)
    return float(bounds.low), float(bounds.high)


def accuracy_interval(scores: list[float] | np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """The exact interval for 0/1 outcomes (an accuracy), a bootstrap one for mean scores in [0, 1]."""
    values = np.asarray(scores, dtype=float)
    if is_binary(values):
        return proportion_interval(int(values.sum()), values.size, confidence)
    return bootstrap_interval(values, confidence=confidence)


def paired_difference_interval(first: list[bool], second: list[bool],
                               confidence: float = 0.95) -> tuple[float, float]:
    """Newcombe's hybrid score interval (1998, method 10) for accuracy(first) - accuracy(second) on the same
    examples: Wilson bounds of each accuracy, combined with the correlation of the paired outcomes."""
    a, b = np.asarray(first, bool), np.asarray(second, bool)
    n = a.size
    if n == 0:
        return (float("nan"), float("nan"))
    both, only_a, only_b = int(np.sum(a & b)), int(np.sum(a & ~b)), int(np.sum(~a & b))
    neither = n - both - only_a - only_b
    p1, p2 = (both + only_a) / n, (both + only_b) / n
    l1, u1 = proportion_interval(both + only_a, n, confidence, "wilson")
    l2, u2 = proportion_interval(both + only_b, n, confidence, "wilson")
    margins = (both + only_a) * (only_b + neither) * (both + only_b) * (only_a + neither)
    phi = (both * neither - only_a * only_b) / sqrt(margins) if margins else 0.0
    gap = p1 - p2
    below = sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    above = sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    return max(-1.0, gap - below), min(1.0, gap + above)


def mcnemar_sample_size(discordant: float, gap: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Paired examples McNemar's test needs to detect ``gap`` (a difference of accuracies) with ``power``, when the
    two conditions disagree on a share ``discordant`` of them (Connor 1987)."""
    if gap == 0 or discordant <= 0:
        return float("inf")
    gap = min(abs(gap), discordant)
    z_alpha, z_power = NormalDist().inv_cdf(1 - alpha / 2), NormalDist().inv_cdf(power)
    return (z_alpha * sqrt(discordant) + z_power * sqrt(max(0.0, discordant - gap ** 2))) ** 2 / gap ** 2


def detectable_gap(total: int, discordant: float, alpha: float = 0.05, power: float = 0.8) -> float | None:
    """The smallest accuracy difference ``total`` paired examples detect with ``power`` at that disagreement rate,
    by bisection on :func:`mcnemar_sample_size`; None when the two never disagree, or when no gap that
    disagreement allows is detectable."""
    if discordant <= 0 or total <= 0:
        return None
    if mcnemar_sample_size(discordant, discordant, alpha, power) > total:
        return None  # even the largest gap this disagreement allows needs more examples than there are
    low, high = 0.0, discordant
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if mcnemar_sample_size(discordant, middle, alpha, power) > total else (low, middle)
    return high


def mcnemar_p(correct_a: list[bool], correct_b: list[bool]) -> float:
    """Exact (binomial) McNemar test on paired outcomes; 1.0 when the two never disagree."""
    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    discordant = only_a + only_b
    if discordant == 0:
        return 1.0
    tail = sum(comb(discordant, i) for i in range(min(only_a, only_b) + 1)) / 2**discordant
    return min(1.0, 2 * tail)


EXACT_SIGN_FLIPS = 16  # up to 2**16 sign patterns are enumerated; more differences are sampled
SAMPLED_SIGN_FLIPS = 20_000


def permutation_p(scores_a: list[float] | np.ndarray, scores_b: list[float] | np.ndarray, seed: int = 0) -> float:
    """Two-sided paired permutation test of the mean difference: under "no difference" each example's two scores
    are exchangeable, so every sign pattern of the per-example differences is equally likely. Exact (every pattern)
    up to 16 examples that differ; else 20,000 seeded random patterns, with the usual +1 so p is never 0."""
    differences = np.asarray(scores_a, float) - np.asarray(scores_b, float)
    differences = differences[differences != 0]
    if differences.size == 0:
        return 1.0
    observed = abs(differences.sum()) - 1e-12
    if differences.size <= EXACT_SIGN_FLIPS:
        patterns = ((np.arange(2 ** differences.size)[:, None] >> np.arange(differences.size)) & 1) * 2 - 1
        return float(np.mean(np.abs(patterns @ differences) >= observed))
    signs = np.random.default_rng(seed).choice([-1.0, 1.0], size=(SAMPLED_SIGN_FLIPS, differences.size))
    extreme = int(np.sum(np.abs(signs @ differences) >= observed))
    return (extreme + 1) / (SAMPLED_SIGN_FLIPS + 1)


def paired_test(scores_a: list[float] | np.ndarray, scores_b: list[float] | np.ndarray) -> tuple[float, str]:
    """The p-value of two conditions scored on the same examples, and the test's name: the exact McNemar test for
    right/wrong outcomes; for scores in [0, 1] (F1, ROUGE...) a paired permutation test on the scores themselves
    (counting a score of 0.6 as "right" would throw away what the metric measured)."""
    if is_binary(scores_a) and is_binary(scores_b):
        return mcnemar_p([s >= 0.5 for s in scores_a], [s >= 0.5 for s in scores_b]), MCNEMAR
    return permutation_p(scores_a, scores_b), PERMUTATION


MCNEMAR, PERMUTATION = "exact McNemar test", "paired permutation test"


def paired_test_name(*score_lists: list[float] | np.ndarray) -> str:
    """The test :func:`paired_test` runs on these scores, named for a table's footnote."""
    return MCNEMAR if all(is_binary(scores) for scores in score_lists) else PERMUTATION


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
