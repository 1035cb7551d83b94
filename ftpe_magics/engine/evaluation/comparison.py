"""``%%compare``: every condition of a body run on the same eval set, and the comparison they make.

What each kind of condition is and does is its entry in :mod:`.condition_kinds`; this module runs a list of
them in order (reading repeats from the result cache, measuring peak memory and time) and holds the
:class:`CompareResult` the table, the tests and the verdict are read from.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..model.memory import PeakMemory
from .condition_kinds import KINDS, ConditionContext, ConditionSpec, check_references, condition_identity
from .evaluator import ConditionResult, Evaluator
from .judge import agreement_notice
from .stats import paired_test
from .verdict import Verdict, verdict


class ConditionCache(Protocol):
    """What running conditions asks of a result cache (the run store's is ``persistence.result_cache``): the
    result of ``compute``, or the stored one of an equal earlier run."""

    def run(self, label: str, identity: dict | None, compute: Callable[[], ConditionResult]) -> ConditionResult: ...


def run_condition(context: ConditionContext, evaluator: Evaluator, spec: ConditionSpec,
                  cache: ConditionCache | None) -> ConditionResult:
    """One condition, read from the cache when it ran before; its peak memory and its whole time (a search and
    a training included, which ``seconds`` leaves out) are measured as it runs."""
    def compute() -> ConditionResult:
        started = time.perf_counter()
        with PeakMemory(evaluator.handle.device) as peak:
            result = KINDS[spec.kind].run(context, evaluator, spec)
        result.extra.update(peak_memory=peak.bytes, wall_seconds=time.perf_counter() - started)
        return result

    return cache.run(spec.label, condition_identity(context, evaluator, spec), compute) if cache is not None \
        else compute()


def run_conditions(context: ConditionContext, evaluator: Evaluator, specs: list[ConditionSpec],
                   cache: ConditionCache | None = None) -> tuple[list[ConditionResult], list[str]]:
    """Every condition in order, and the labels of those the stop button kept from running.

    A condition cut short is kept, marked ``interrupted`` with its partial outputs; nothing after it runs.
    With a ``cache``, a condition that ran before on the same weights, data and settings is read back.
    """
    check_references(context, specs)
    results: list[ConditionResult] = []
    for index, spec in enumerate(specs):
        try:
            results.append(run_condition(context, evaluator, spec, cache))
        except KeyboardInterrupt:  # stopped outside a forward pass (tokenising, selecting demonstrations)
            return results, [s.label for s in specs[index:]]
        if results[-1].interrupted:
            return results, [s.label for s in specs[index + 1:]]
    return results, []


def format_notice(result: ConditionResult) -> str | None:
    """For a structured metric: how many outputs were not a JSON object and the commonest reasons, and how many
    had text around the object (scored on the object alone)."""
    report = result.extra.get("format")
    if not report:
        return None
    parts = []
    if report["valid"] < result.n:
        reasons = ", ".join(f"{reason} ({count})" for reason, count in report["failures"])
        parts.append(f"{result.n - report['valid']} of {result.n} outputs hold no JSON object: {reasons}")
    if report["surrounded"]:
        parts.append(f"{report['surrounded']} had text around the object (scored on the object alone)")
    return f"{result.condition}: " + "; ".join(parts) + "." if parts else None


def metric_notices(result: ConditionResult) -> list[str]:
    """What a metric's scores need beside them: a structured metric's format report, a judge's agreement with
    exact match."""
    said = [format_notice(result)]
    if "judge" in result.extra:
        said.append(agreement_notice(result.condition, result.extra["judge"]))
    return [line for line in said if line]


# the columns the table shows (text and HTML): what fits an output area; to_pandas() holds every column
SHOWN_COLUMNS = ["condition", "accuracy", "accuracy_low", "accuracy_high", "macro_f1", "latency_ms", "prompt_tokens",
                 "p_vs_best", "n"]


@dataclass
class CompareResult:
    """Conditions scored on the same examples: the table, per-example predictions, and the tests between them."""

    conditions: list[ConditionResult]
    eval_texts: list[str]
    title: str = "compare"
    search_log: list[dict] | None = None  # %%fewshot --search: every candidate and its validation accuracy
    model_params: int = 0  # of the base model: FLOPs per query and of training are counted from it
    # %%compare --train: a learning_curve.LearningCurve (every size; ``conditions`` are the largest size's). Not
    # imported here: the curve is built from this module's runners, so the type would make an import cycle.
    curve: Any = None
    # --also: each other task's template and the base model's per-example scores on it (a fine-tune's own are in
    # its condition's extra["also"]): the verdict's flexibility sentence
    flexibility: dict[str, dict] | None = None

    def __post_init__(self) -> None:
        if not self.conditions:
            raise ValueError("a comparison needs at least one condition")

    @property
    def best(self) -> ConditionResult:
        """The most accurate condition that ran to the end (an interrupted one is not scored)."""
        finished = [c for c in self.conditions if not c.interrupted] or self.conditions
        return max(finished, key=lambda c: c.accuracy)

    def _row(self, result: ConditionResult, best: ConditionResult) -> dict:
        low, high = result.interval
        row = {"condition": result.condition, "kind": result.kind, "accuracy": result.accuracy,
               "accuracy_low": low, "accuracy_high": high, "macro_f1": result.macro_f1,
               "consistency": result.consistency, "latency_ms": result.latency_ms,
               "prompt_tokens": result.mean_prompt_tokens, "tokens_generated": result.tokens_generated,
               "trainable_params": result.trainable_params,
               "train_seconds": result.train_seconds,
               "p_vs_best": None if result is best or result.interrupted or best.interrupted
               else paired_test(result.scores, best.scores)[0], "n": result.n, "interrupted": result.interrupted}
        if self.model_params:  # the usual estimates: 2 FLOPs per parameter per token read or generated, 6 per
            # token trained on
            row["flops_per_query"] = 2.0 * self.model_params * (result.mean_prompt_tokens
                                                                 + (result.tokens_generated or 0.0))
            tokens = result.extra.get("train_tokens")
            row["train_flops"] = 6.0 * self.model_params * tokens if tokens else None
        for name, values in result.extra.get("metric_scores", {}).items():  # a metric's other scores, as columns
            row[name] = float(np.mean(values))
        if result.order_accuracies:
            row["order_spread"] = float(np.std(result.order_accuracies))
        if result.extra.get("peak_memory"):
            row["peak_memory_mb"] = result.extra["peak_memory"] / 2**20
        for name, task in (self.flexibility or {}).items():  # a prompt leaves the model as it is: the base's score
            row[f"{name}_accuracy"] = float(np.mean(result.extra.get("also", {}).get(name, task["base"])))
        return row

    def metric_columns(self) -> list[str]:
        """The columns a metric added beside the accuracy (``valid_rate`` for ``--metric json``, a user metric's
        other named scores), in the order the metric gave them."""
        names = [name for c in self.conditions for name in c.extra.get("metric_scores", {})]
        return list(dict.fromkeys(names))

    def to_pandas(self):
        import pandas as pd

        best = self.best
        return pd.DataFrame([self._row(result, best) for result in self.conditions])

    def examples(self):
        """Per-example predictions of every condition (and whether each is right)."""
        import pandas as pd

        frame = pd.DataFrame({"text": self.eval_texts, "reference": self.conditions[0].references})
        for result in self.conditions:
            frame[result.condition] = result.predictions
            frame[f"{result.condition}_correct"] = result.correct
        return frame

    def disagreements(self) -> list[int]:
        """Indices of the examples on which the conditions do not all predict the same."""
        return [index for index in range(len(self.eval_texts))
                if len({c.predictions[index] for c in self.conditions}) > 1]

    def notices(self) -> list[str]:
        """What a reader must be told beside the numbers; the text view and the HTML view both show them."""
        said = [f"{c.condition}: {c.leakage_notice}" if len(self.conditions) > 1 else c.leakage_notice
                for c in self.conditions if c.leakage_notice]
        said += [line for c in self.conditions for line in metric_notices(c)]
        return list(dict.fromkeys(said))

    def shown_columns(self) -> list[str]:
        """The table's columns: the metric's own beside the accuracy, and tokens generated (a generation task's
        cost) after the prompt tokens."""
        generated = ["tokens_generated"] if any(c.tokens_generated is not None for c in self.conditions) else []
        return SHOWN_COLUMNS[:5] + self.metric_columns() + SHOWN_COLUMNS[5:7] + generated + SHOWN_COLUMNS[7:]

    def __str__(self) -> str:
        columns = self.shown_columns()
        table = self.to_pandas()[columns].to_string(index=False, float_format=lambda v: f"{v:.3f}")
        return "\n".join([table, *self.notices()])

    def verdict(self) -> Verdict:
        """Prompt or fine-tune: the best of each side, the gap and its significance, consistency, the break-even
        point and a recommendation, in sentences whose numbers are this table's (see :mod:`.verdict`)."""
        if self.curve is None:
            return verdict(self.conditions, flexibility=self.flexibility)
        return verdict(self.conditions, self.curve.crossover().sentence, self.curve.draw_spreads(), self.flexibility)

    def _repr_pretty_(self, printer, cycle: bool) -> None:
        printer.text(str(self))
