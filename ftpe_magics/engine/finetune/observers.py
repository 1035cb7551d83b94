"""Who hears about a training run: a small protocol, and the engine's own history.

Training knows nothing of notebooks. It tells observers that it started (with its plan), finished
a step, logged a loss, validated, and ended; the live notebook view is one observer, the run store's
adapter checkpoints are another, and a worker's progress file (``workers.progress``) is a third. The
adapter's history comes from :class:`TrainingHistory`, which the engine always attaches, so it never
depends on a view.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TrainingPlan:
    """What a run is about to do, for observers that show progress."""

    total_steps: int
    method: str
    trainable_params: int


class TrainingObserver:
    """Every hook does nothing; an observer overrides the ones it needs.

    An observer that raises ``KeyboardInterrupt`` stops training as the stop button does.
    """

    def start(self, plan: TrainingPlan) -> None:
        """Training is about to begin."""

    def step(self, step: int, tokens: int) -> None:
        """Optimizer step ``step`` finished; ``tokens`` real (unpadded) tokens were batched so far."""

    def log(self, record: dict[str, Any]) -> None:
        """A training log: ``step``, ``loss``, ``learning_rate``, ``epoch``."""

    def evaluation(self, record: dict[str, Any]) -> None:
        """A validation: ``step``, ``eval_loss`` and, with a label set, ``eval_accuracy``."""

    def improved(self, step: int, metric: float | None, adapter: Callable[[], Any]) -> None:
        """The validation at ``step`` is the best so far; ``adapter()`` builds the adapter as it is now (only
        an observer that keeps checkpoints pays for building it)."""

    def end(self, adapter: Any) -> None:
        """Training ended (finished, stopped early or interrupted) with this adapter."""


class TrainingHistory(TrainingObserver):
    """Every log and validation record in order: the adapter's ``history``."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def log(self, record: dict[str, Any]) -> None:
        self.records.append(record)

    def evaluation(self, record: dict[str, Any]) -> None:
        self.records.append(record)


class Observers(TrainingObserver):
    """Many observers as one: each hook is passed on in order."""

    def __init__(self, observers: list[TrainingObserver]) -> None:
        self.observers = observers

    def start(self, plan: TrainingPlan) -> None:
        for observer in self.observers:
            observer.start(plan)

    def step(self, step: int, tokens: int) -> None:
        for observer in self.observers:
            observer.step(step, tokens)

    def log(self, record: dict[str, Any]) -> None:
        for observer in self.observers:
            observer.log(record)

    def evaluation(self, record: dict[str, Any]) -> None:
        for observer in self.observers:
            observer.evaluation(record)

    def improved(self, step: int, metric: float | None, adapter: Callable[[], Any]) -> None:
        for observer in self.observers:
            observer.improved(step, metric, adapter)

    def end(self, adapter: Any) -> None:
        for observer in self.observers:
            observer.end(adapter)
