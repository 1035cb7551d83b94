"""Validation sized to the run: checks between steps that cost about a fifth of the training, and the whole
split where it decides something.

A validation split of 400 SST-2 reviews, scored every quarter of a 10-step run and twice each time (the
``Trainer``'s loss pass and the accuracy pass), took longer than the training it watched. Here:

- one pass gives both numbers: the accuracy, and the loss as the mean negative log-likelihood per token of
  each example's correct answer (the tokens a ``completion`` loss trains);
- checks between steps score a seeded subsample of the split (``INTERMEDIATE_EXAMPLES``), the same one each
  time, so they compare with each other;
- without ``--eval-steps`` the next check comes when the validation time so far, with the next check's, stays
  within ``VALIDATION_SHARE`` of the training time so far (the first estimated from the step time, later ones
  measured); ``--eval-steps N`` validates every N steps as asked;
- at the end the whole split scores the final state and, when another state was best on the subsample, that
  one too: the better of the two on the whole split is the adapter, and its accuracy is ``best_metric``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

INTERMEDIATE_EXAMPLES = 128
VALIDATION_SHARE = 0.2
# a scored example costs about a third of a trained one (a forward pass against forward and backward)
SCORING_PER_TRAINED_EXAMPLE = 1 / 3


@dataclass(frozen=True)
class ValidationScore:
    accuracy: float
    loss: float
    examples: int


# scores the model on the validation examples at these positions (None: all of them)
ValidationMetric = Callable[[Any, list[int] | None], ValidationScore]


def intermediate_positions(size: int, seed: int) -> list[int] | None:
    """The seeded subsample the checks between steps score (None: the split is small enough to score whole)."""
    if size <= INTERMEDIATE_EXAMPLES:
        return None
    return sorted(random.Random(seed).sample(range(size), INTERMEDIATE_EXAMPLES))


@dataclass
class ValidationSchedule:
    """When the next check between steps is due: every ``every`` steps, or by the time it would cost."""

    total_steps: int
    every: int | None
    checked_examples: int  # examples one check scores
    batch_size: int  # examples one training step trains
    train_seconds: float = 0.0
    validation_seconds: float = 0.0
    last_check_seconds: float | None = None

    def due(self, step: int) -> bool:
        if step >= self.total_steps:  # the end is validated on the whole split
            return False
        if self.every:
            return step % self.every == 0
        step_seconds = self.train_seconds / max(1, step)
        next_check = self.last_check_seconds if self.last_check_seconds is not None else \
            step_seconds * SCORING_PER_TRAINED_EXAMPLE * self.checked_examples / max(1, self.batch_size)
        return self.validation_seconds + next_check <= VALIDATION_SHARE * self.train_seconds

    def spent(self, seconds: float) -> None:
        self.validation_seconds += seconds
        self.last_check_seconds = seconds
