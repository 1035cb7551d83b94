"""``%%compare --train VAR --sizes 16,64,256,1024``: accuracy against the number of labelled examples.

At each size n every condition that learns from data runs on the first n of one seeded shuffle of ``--train``
(so the sizes are nested: the 64 contain the 16): few-shot conditions draw their demonstrations from those n,
fine-tune conditions train on them. Conditions that learn nothing from the data (prompt, cot, base, adapter)
run once and stay flat. ``--repeats R`` draws each size R times with every seed moved by the repeat's number.

The crossover is the smallest n at which the best fine-tune (by accuracy pooled over the repeats) is better
than the best prompt and an exact McNemar test on the pooled pairs (every eval example of every repeat; for a
metric in [0, 1], a paired permutation test on the scores) says p < 0.05; a difference that does not pass is not
a crossover, whatever the point estimates say.
"""

from __future__ import annotations

import bisect
import dataclasses
import time
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
from .stats import accuracy_interval, paired_test, paired_test_name
from .verdict import ALPHA, choose

AUTO_START = 16  # --sizes auto: the first size (or the whole pool when it is smaller)


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
    hunted: bool = False  # --sizes auto: the sizes were chosen as the curve ran
    bracket: tuple[int, int] | None = None  # the adaptive curve's last sizes below and at the crossover
    # (label, size, repeat) -> the line's selection on that draw of --train (None: it has no fair score there)
    selections: dict[tuple[str, int, int], dict | None] = field(default_factory=dict)

    def selection(self, label: str, size: int, repeat: int = 0) -> dict | None:
        return self.selections.get((label, size, repeat))

    def train_score(self, label: str, size: int) -> float | None:
        """The line's accuracy on --train at ``size``, the mean over repeats (None when a repeat has none)."""
        chosen = [self.selection(label, size, repeat) for repeat in range(self.repeats)]
        return None if any(c is None for c in chosen) else float(np.mean([c["accuracy"] for c in chosen]))

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
        low, high = accuracy_interval(scores)
        accuracies = [r.accuracy for r in runs]
        return {"condition": label, "kind": runs[0].kind, "n": size, "accuracy": float(scores.mean()),
                "accuracy_low": low, "accuracy_high": high,
                "spread": float(np.std(accuracies)) if len(runs) > 1 else None, "repeats": len(runs),
                "train_seconds": float(np.mean([r.train_seconds for r in runs])),
                "prompt_tokens": float(np.mean([r.mean_prompt_tokens for r in runs])),
                "latency_ms": float(np.mean([r.latency_ms for r in runs])),
                "peak_memory_mb": max(r.extra.get("peak_memory", 0) for r in runs) / 2**20,
                "wall_seconds": float(np.mean([r.extra.get("wall_seconds", r.seconds) for r in runs])),
                **_generation_columns(runs)}

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
        """The side's best at ``size``, by the verdict's rule: chosen on --train when a line has a score there."""
        labels = [label for label, kind in self.kinds().items() if kind in kinds_on(side)]
        return choose({label: (self.train_score(label, size), self.pooled(label, size)["prompt_tokens"],
                               self.pooled(label, size)["accuracy"]) for label in labels})

    def _pooled_scores(self, label: str, size: int) -> list[float]:
        return [score for run in self.results(label, size) for score in run.scores]

    def test_name(self) -> str:
        """The paired test the crossover is decided by: McNemar for right/wrong scores, a permutation test on the
        scores for a metric in [0, 1]."""
        sizes = self.measured_sizes()
        scores = [self._pooled_scores(label, sizes[-1]) for label in self.labels()] if sizes else []
        return paired_test_name(*(s for s in scores if s))

    def standing(self, size: int) -> tuple[str, str, float, float] | None:
        """At ``size``: the best prompt, the best fine-tune, the pooled paired test's p between them and the fine-tune's
        lead (None without both sides)."""
        prompt, finetune = self._best(size, PROMPT_SIDE), self._best(size, FINETUNE_SIDE)
        if prompt is None or finetune is None:
            return None
        p, _ = paired_test(self._pooled_scores(finetune, size), self._pooled_scores(prompt, size))
        return prompt, finetune, p, self.pooled(finetune, size)["accuracy"] - self.pooled(prompt, size)["accuracy"]

    def ahead(self, size: int) -> bool:
        """Whether the best fine-tune is significantly more accurate than the best prompt at ``size``."""
        standing = self.standing(size)
        return standing is not None and standing[3] > 0 and standing[2] < ALPHA

    def crossover(self) -> Crossover:
        sizes = self.measured_sizes()
        if not sizes:
            return Crossover(None, "Crossover: not measured (the learning curve stopped before its first size).")
        if any(self.standing(size) is None for size in sizes):
            return Crossover(None, "Crossover: not measured (the curve needs a prompting and a finetune condition).")
        ran = f" (sizes run: {', '.join(map(str, sizes))})" if self.hunted else ""
        for index, size in enumerate(sizes):
            prompt, finetune, p, gap = self.standing(size)
            if gap > 0 and p < ALPHA:
                where = (f"between n={sizes[index - 1]} and n={size}" if self.hunted and index else f"at n={size}")
                return Crossover(size, f"Crossover: {where} labelled examples{ran}: at n={size} {finetune} is "
                                       f"significantly more accurate than {prompt} ({gap * 100:+.1f} points, pooled "
                                       f"{self.test_name()} over {self.repeats} repeat(s): p = {p:.3g}); below it, "
                                       "not.", p)
        prompt, finetune, p, gap = self.standing(sizes[-1])
        return Crossover(None, f"Crossover: not reached up to n={sizes[-1]}{ran}: there {finetune} against {prompt} "
                               f"is {gap * 100:+.1f} points, pooled {self.test_name()} p = {p:.3g} (not significant "
                               f"at {ALPHA}, or the prompt is ahead).", p)


@dataclass
class _CurveRun:
    """What every size of one curve shares: the conditions, the pool, the cache, and the flat results."""

    context: ConditionContext
    evaluator: Evaluator
    specs: list[ConditionSpec]
    pool: Examples
    seed: int
    cache: ConditionCache | None
    log: Callable[[str], None]
    curve: LearningCurve
    flat: dict[str, ConditionResult] = field(default_factory=dict)
    # puts each result's accuracy on the size's training draw in its extra["selection"] (the side's best is
    # chosen on it at every size, before the eval set decides anything)
    choose: Callable[[list[ConditionResult], Examples], None] = lambda results, draw: None

    def size(self, size: int) -> list[str]:
        """Every repeat at ``size``; the labels the stop button kept from running (empty: all ran)."""
        curve = self.curve
        if size not in curve.sizes:
            bisect.insort(curve.sizes, size)
        for repeat in range(curve.repeats):
            self.log(f"Learning curve: n={size}" + (f", draw {repeat + 1} of {curve.repeats}" if curve.repeats > 1
                                                     else "") + ".")
            draw = nested_draws(self.pool, [size], self.seed + repeat)[size]
            point_context = dataclasses.replace(self.context, train_pool=draw, seed_offset=repeat)
            results = []
            for spec in self.specs:
                if not KINDS[spec.kind].learns_from_train and spec.label in self.flat:
                    results.append(self.flat[spec.label])
                    continue
                try:
                    result = run_condition(point_context, self.evaluator, spec, self.cache)
                except KeyboardInterrupt:
                    return [f"{spec.label} at n={size}"]
                if result.interrupted:
                    return [f"{spec.label} at n={size}"]
                self.flat.setdefault(spec.label, result)
                results.append(result)
            self.choose(results, draw)
            for result in results:  # a line that learns nothing is one result at every size: its score per size
                curve.selections[(result.condition, size, repeat)] = result.extra.pop("selection", None)
            curve.points.append(CurvePoint(size, repeat, results))
        return []


def run_curve(context: ConditionContext, evaluator: Evaluator, specs: list[ConditionSpec], pool: Examples,
              sizes: list[int] | None, repeats: int, seed: int, cache: ConditionCache | None = None,
              log: Callable[[str], None] = lambda message: None, budget_minutes: float | None = None,
              choose: Callable[[list[ConditionResult], Examples], None] | None = None) -> tuple[LearningCurve,
                                                                                                 list[str]]:
    """Every condition at every size and repeat (size by size, so a stop keeps whole sizes); the curve and what
    the stop button kept from running. ``log`` hears of each size as it starts (a curve can run for hours).
    ``sizes`` None: the adaptive curve (:func:`hunt`), within ``budget_minutes``. ``choose`` scores each size's
    results on its training draw, so the crossover compares the sides' best chosen there."""
    check_references(dataclasses.replace(context, train_pool=pool), specs)
    if sizes:
        nested_draws(pool, sizes, seed)  # a size above the pool is an error before anything runs
    run = _CurveRun(context, evaluator, specs, pool, seed, cache, log, LearningCurve([], repeats, hunted=not sizes))
    if choose is not None:
        run.choose = choose
    if not sizes:
        return run.curve, hunt(run, budget_minutes)
    for size in sizes:
        not_run = run.size(size)
        if not_run:
            return run.curve, not_run
    return run.curve, []


def hunt(run: _CurveRun, budget_minutes: float | None, start: int = AUTO_START) -> list[str]:
    """``--sizes auto``: double from ``start`` until the best fine-tune is significantly ahead or the pool is used,
    then bisect between the last two sizes until they are within a factor of 1.5; never past the budget."""
    started, total = time.perf_counter(), len(run.pool)

    def spent() -> bool:
        over = budget_minutes is not None and time.perf_counter() - started > 60 * budget_minutes
        if over:
            run.log(f"Learning curve: the budget of {budget_minutes:g} minute(s) is spent; stopped with the sizes run.")
        return over

    low, size = None, min(start, total)
    while True:
        not_run = run.size(size)
        if not_run or run.curve.ahead(size) or size == total or spent():
            break
        low, size = size, min(2 * size, total)
    high = size if run.curve.ahead(size) and not not_run else None
    while not not_run and low is not None and high is not None and high / low > 1.5 and not spent():
        middle = round((low * high) ** 0.5)
        not_run = run.size(middle)
        low, high = (low, middle) if run.curve.ahead(middle) else (middle, high)
    run.curve.bracket = (low, high) if high is not None and low is not None else None
    return not_run


def curve_data(curve: LearningCurve, run_of: dict[int, int]) -> dict:
    """The curve for the run store: each point's conditions as the runs that hold them (``run_of``: result
    object id -> run id), so no result is stored twice."""
    return {"sizes": curve.sizes, "repeats": curve.repeats, "removed": curve.removed, "hunted": curve.hunted,
            "bracket": curve.bracket,
            "points": [{"size": point.size, "repeat": point.repeat,
                        "conditions": [run_of[id(result)] for result in point.conditions],
                        "selections": [curve.selection(result.condition, point.size, point.repeat)
                                       for result in point.conditions]} for point in curve.points]}


def curve_from_data(data: dict, condition: Callable[[int], ConditionResult]) -> LearningCurve:
    """The stored curve back, with each line's selection per size (stores before 0.5 have none)."""
    points = [CurvePoint(point["size"], point["repeat"], [condition(run) for run in point["conditions"]])
              for point in data["points"]]
    curve = LearningCurve(data["sizes"], data["repeats"], points, data.get("removed", 0), data.get("hunted", False),
                          tuple(data["bracket"]) if data.get("bracket") else None)
    for point, stored in zip(points, data["points"], strict=True):
        for result, chosen in zip(point.conditions, stored.get("selections") or [None] * len(point.conditions),
                                  strict=True):
            curve.selections[(result.condition, point.size, point.repeat)] = chosen
    return curve


def _generation_columns(runs: list[ConditionResult]) -> dict:
    """A generation task's columns at one size, pooled over repeats: the metric's own (``valid_rate``...) and the
    tokens each answer took."""
    columns = {name: float(np.mean([np.mean(r.extra["metric_scores"][name]) for r in runs]))
               for name in runs[0].extra.get("metric_scores", {})
               if all(name in r.extra.get("metric_scores", {}) for r in runs)}
    generated = [r.tokens_generated for r in runs if r.tokens_generated is not None]
    if generated:
        columns["tokens_generated"] = float(np.mean(generated))
    return columns
