"""``%%compare --train VAR --sizes 16,64,256,1024``: accuracy against the number of labelled examples.

At each size n every condition that learns from data runs on the first n of one seeded shuffle of ``--train``
(so the sizes are nested: the 64 contain the 16): few-shot conditions draw their demonstrations from those n,
fine-tune conditions train on them. Conditions that learn nothing from the data (prompt, cot, base, adapter)
run once and stay flat. ``--repeats R`` draws each size R times with every seed moved by the repeat's number.

The crossover is the smallest n at which the best fine-tune (by accuracy pooled over the repeats) is better
than the best prompt and an exact McNemar test on the pooled pairs (every eval example of every repeat) says
p < 0.05; a difference that does not pass is not a crossover, whatever the point estimates say.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..data.examples import Examples
from ..data.splits import nested_draws
from .comparison import ConditionCache, run_condition
from .condition_kinds import (
    FINETUNE_SIDE,
    KINDS,
    PROMPT_SIDE,
    ConditionContext,
    ConditionSpec,
    check_references,
    kinds_on,
)
from .evaluator import ConditionResult, Evaluator
from .stats import bootstrap_interval, mcnemar_p
from .verdict import ALPHA


@dataclass
class CurvePoint:
    size: int
    repeat: int
    conditions: list[ConditionResult]


@dataclass
class Crossover:
    """Where the best fine-tune first beats the best prompt significantly (``size`` None: not reached)."""

    size: int | None
    sentence: str
    p: float | None = None


@dataclass
class LearningCurve:
    """Every condition's result at every size and repeat, and the statistics across them."""

    sizes: list[int]
    repeats: int
    points: list[CurvePoint] = field(default_factory=list)
    removed: int = 0  # training examples dropped because the eval set holds their text

    def labels(self) -> list[str]:
        return [c.condition for c in self.points[0].conditions] if self.points else []

    def kinds(self) -> dict[str, str]:
        return {c.condition: c.kind for c in self.points[0].conditions} if self.points else {}

    def results(self, label: str, size: int) -> list[ConditionResult]:
        """``label``'s result in each repeat at ``size``."""
        return [c for point in self.points if point.size == size for c in point.conditions if c.condition == label]

    def measured_sizes(self) -> list[int]:
        """Sizes at which every repeat finished (a stopped curve keeps those)."""
        return [size for size in self.sizes if sum(p.size == size for p in self.points) == self.repeats]

    def pooled(self, label: str, size: int) -> dict:
        runs = self.results(label, size)
        scores = np.concatenate([np.asarray(r.scores, float) for r in runs])
        low, high = bootstrap_interval(scores)
        accuracies = [r.accuracy for r in runs]
        return {"condition": label, "kind": runs[0].kind, "n": size, "accuracy": float(scores.mean()),
                "accuracy_low": low, "accuracy_high": high,
                "spread": float(np.std(accuracies)) if len(runs) > 1 else None, "repeats": len(runs),
                "train_seconds": float(np.mean([r.train_seconds for r in runs])),
                "prompt_tokens": float(np.mean([r.mean_prompt_tokens for r in runs])),
                "latency_ms": float(np.mean([r.latency_ms for r in runs])),
                "peak_memory_mb": max(r.extra.get("peak_memory", 0) for r in runs) / 2**20,
                "wall_seconds": float(np.mean([r.extra.get("wall_seconds", r.seconds) for r in runs]))}

    def to_pandas(self):
        """One row per condition and size: accuracy pooled over repeats, its 95% interval, and the spread (the
        standard deviation of the repeats' accuracies)."""
        import pandas as pd

        return pd.DataFrame([self.pooled(label, size) for size in self.measured_sizes() for label in self.labels()])

    def draw_spreads(self) -> dict[str, tuple[int, float]]:
        """At the largest measured size, with repeats: each condition's number of draws and the standard deviation
        of their accuracies (for the verdict's consistency sentence)."""
        sizes = self.measured_sizes()
        if not sizes or self.repeats < 2:
            return {}
        return {label: (self.repeats, self.pooled(label, sizes[-1])["spread"]) for label in self.labels()}

    def _best(self, size: int, side: str) -> str | None:
        labels = [label for label, kind in self.kinds().items() if kind in kinds_on(side)]
        return max(labels, key=lambda label: self.pooled(label, size)["accuracy"]) if labels else None

    def _pooled_correct(self, label: str, size: int) -> list[bool]:
        return [flag for run in self.results(label, size) for flag in run.correct]

    def crossover(self) -> Crossover:
        sizes = self.measured_sizes()
        if not sizes:
            return Crossover(None, "Crossover: not measured (the learning curve stopped before its first size).")
        last = None
        for size in sizes:
            prompt, finetune = self._best(size, PROMPT_SIDE), self._best(size, FINETUNE_SIDE)
            if prompt is None or finetune is None:
                return Crossover(None, "Crossover: not measured (the curve needs a prompting and a finetune "
                                       "condition).")
            p = mcnemar_p(self._pooled_correct(finetune, size), self._pooled_correct(prompt, size))
            gap = self.pooled(finetune, size)["accuracy"] - self.pooled(prompt, size)["accuracy"]
            last = (size, prompt, finetune, p, gap)
            if gap > 0 and p < ALPHA:
                return Crossover(size, f"Crossover: at n={size} labelled examples, {finetune} is significantly more "
                                       f"accurate than {prompt} ({gap * 100:+.1f} points, pooled McNemar over "
                                       f"{self.repeats} repeat(s): p = {p:.3g}); below it, not.", p)
        size, prompt, finetune, p, gap = last
        return Crossover(None, f"Crossover: not reached up to n={size}: there {finetune} against {prompt} is "
                               f"{gap * 100:+.1f} points, pooled McNemar p = {p:.3g} (not significant at {ALPHA}, or "
                               "the prompt is ahead).", p)


def run_curve(context: ConditionContext, evaluator: Evaluator, specs: list[ConditionSpec], pool: Examples,
              sizes: list[int], repeats: int, seed: int, cache: ConditionCache | None = None,
              log: Callable[[str], None] = lambda message: None) -> tuple[LearningCurve, list[str]]:
    """Every condition at every size and repeat (size by size, so a stop keeps whole sizes); the curve and what
    the stop button kept from running. ``log`` hears of each size as it starts (a curve can run for hours)."""
    check_references(dataclasses.replace(context, train_pool=pool), specs)
    draws = [nested_draws(pool, sizes, seed + repeat) for repeat in range(repeats)]
    curve = LearningCurve(sizes, repeats)
    flat: dict[str, ConditionResult] = {}
    for size in sizes:
        for repeat in range(repeats):
            log(f"Learning curve: n={size}" + (f", draw {repeat + 1} of {repeats}" if repeats > 1 else "") + ".")
            point_context = dataclasses.replace(context, train_pool=draws[repeat][size], seed_offset=repeat)
            results = []
            for spec in specs:
                if not KINDS[spec.kind].learns_from_train and spec.label in flat:
                    results.append(flat[spec.label])
                    continue
                try:
                    result = run_condition(point_context, evaluator, spec, cache)
                except KeyboardInterrupt:
                    return curve, [f"{spec.label} at n={size}"]
                if result.interrupted:
                    return curve, [f"{spec.label} at n={size}"]
                flat.setdefault(spec.label, result)
                results.append(result)
            curve.points.append(CurvePoint(size, repeat, results))
    return curve, []


def curve_data(curve: LearningCurve, run_of: dict[int, int]) -> dict:
    """The curve for the run store: each point's conditions as the runs that hold them (``run_of``: result
    object id -> run id), so no result is stored twice."""
    return {"sizes": curve.sizes, "repeats": curve.repeats, "removed": curve.removed,
            "points": [{"size": point.size, "repeat": point.repeat,
                        "conditions": [run_of[id(result)] for result in point.conditions]} for point in curve.points]}


def curve_from_data(data: dict, condition: Callable[[int], ConditionResult]) -> LearningCurve:
    points = [CurvePoint(point["size"], point["repeat"], [condition(run) for run in point["conditions"]])
              for point in data["points"]]
    return LearningCurve(data["sizes"], data["repeats"], points, data.get("removed", 0))
