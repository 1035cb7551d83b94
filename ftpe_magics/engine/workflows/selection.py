"""Each side's best chosen on ``--train``, before the eval set decides anything (no winner's curse).

With a training pool, every condition that can be scored fairly on it gets a selection accuracy there: a
template (it learns nothing from the pool) is scored on the pool itself; a few-shot configuration by
cross-validation on it (demonstrations from the other folds), or by its own search's validation; a searched
fine-tune by its search's validation. The verdict then compares the side's best by that score on ``--eval``.
What each kind can offer is its registry entry's ``selection``; this module supplies the pool to score on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ..data.examples import Examples
from ..data.splits import folds
from ..errors import FtpeError
from ..evaluation.condition_kinds import KINDS, ConditionContext, ConditionSpec
from ..evaluation.evaluator import ConditionResult
from ..options import CompareOptions, EvalOptions
from ..prompting.fewshot import FewShotConfig
from ..workbench import Workbench
from .fewshot import fold_scorer

SELECTION_FOLDS = 5


def choose_on_train(bench: Workbench, context: ConditionContext, specs: list[ConditionSpec],
                    results: list[ConditionResult], pool: Examples, compare: CompareOptions,
                    evaluation: EvalOptions, namespace: Mapping[str, Any] | None) -> None:
    """Put each result's selection accuracy on ``pool`` (the training draw its table row used) in its extra."""
    plain = dataclasses.replace(evaluation, limit=None)
    splits = folds(pool, min(SELECTION_FOLDS, len(pool)), evaluation.seed) if len(pool) >= 2 else []
    scorer = fold_scorer(bench, splits, plain, namespace) if splits else None

    def cross_validate(config: FewShotConfig) -> float | None:
        if scorer is None:
            return None
        try:
            return scorer("selection", config).accuracy
        except FtpeError:  # e.g. more demonstrations than a fold leaves: no fair score, chosen on --eval
            return None

    select = dataclasses.replace(context, train_pool=pool, select_on=bench.evaluator(pool, plain, namespace, compare),
                                 cross_validate=cross_validate)
    by_label = {spec.label: spec for spec in specs}
    for result in results:
        spec = by_label.get(result.condition)
        if spec is None or result.interrupted:
            continue
        chosen = KINDS[spec.kind].selection(select, spec, result)
        if chosen is not None and chosen.get("accuracy") is not None:
            result.extra["selection"] = chosen
