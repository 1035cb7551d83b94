"""A condition kind is one registry entry: a kind defined here runs through %%compare, a curve and the verdict."""

from __future__ import annotations

import pytest
from fewshot_data import EVAL, POOL

from ftpe_magics import FtpeError
from ftpe_magics.engine.data.splits import nested_draws
from ftpe_magics.engine.evaluation.condition_kinds import (
    FINETUNE_SIDE,
    KINDS,
    ConditionKind,
    kinds_on,
    parse_conditions,
    registered,
)
from ftpe_magics.engine.evaluation.evaluator import ConditionResult
from ftpe_magics.engine.evaluation.identity import data_fingerprint
from ftpe_magics.engine.run_log import RunLog

BODY = "zero: prompt Review: {text}\\nSentiment:\nmaj: majority\n"


def _majority(context, evaluator, spec) -> ConditionResult:
    """Predict the most frequent label of the training pool (the first label seen on a tie) for every example."""
    labels = context.train_pool.labels
    majority = max(dict.fromkeys(labels), key=labels.count)
    references = evaluator.eval_data.labels
    predictions = [majority] * len(references)
    return ConditionResult(spec.label, "majority", f"majority of {len(labels)}", references, predictions,
                           predictions, [float(p == r) for p, r in zip(predictions, references, strict=True)],
                           evaluator.eval_data.label_set, 0.0, [0] * len(references), "")


def _needs_train(context, spec) -> None:
    if context.train_pool is None:
        raise FtpeError(f"{spec.label}: majority counts the labels of --train; add --train VAR.")


MAJORITY = ConditionKind("majority", _majority, FINETUNE_SIDE, needs_spec=False, learns_from_train=True,
                         identity=lambda context, evaluator, spec: {"kind": "majority",
                                                                    "train": data_fingerprint(context.train_pool)},
                         check=_needs_train)
# the pool is 20 positive then 20 negative: a draw of 6 or 12 has a majority that depends on the seeded shuffle
UNBALANCED = POOL[:30]


def test_a_kind_defined_outside_the_engine_runs_in_compare_a_curve_and_the_verdict(tiny_session):
    with registered(MAJORITY):
        assert "majority" in kinds_on(FINETUNE_SIDE)
        result = tiny_session.compare(BODY, EVAL, train=UNBALANCED, sizes="6,12", no_cache=True)
        by_size = {point.size: point.conditions[1] for point in result.curve.points}
        assert sorted(by_size) == [6, 12] and by_size[12].spec == "majority of 12"
        pool = tiny_session.examples(UNBALANCED, "--train")
        for size, draw in nested_draws(pool, [6, 12], seed=0).items():  # learns from each draw: its majority
            majority = max(dict.fromkeys(draw.labels), key=draw.labels.count)
            assert by_size[size].predictions == [majority] * len(EVAL)
        assert result.verdict().numbers["finetune"] == "maj"
        assert result.verdict().numbers["prompt"] == "zero"
    assert "majority" not in KINDS and "majority" not in kinds_on(FINETUNE_SIDE)  # the registry as it was
    with pytest.raises(FtpeError, match="unknown kind 'majority'"):
        parse_conditions(BODY)


def test_a_registered_kind_is_checked_before_any_condition_runs(tiny_session):
    with registered(MAJORITY), pytest.raises(FtpeError, match="majority counts the labels of --train"):
        tiny_session.compare(BODY, EVAL, no_cache=True)


def test_the_kind_registry_answers_for_the_magic_and_the_training_view(shell):
    shell.user_ns.update(train=UNBALANCED, ev=EVAL)
    with registered(MAJORITY):
        shell.run_cell_magic("compare", "--eval ev --train train --out res", BODY)
    result = shell.user_ns["res"]
    assert [c.kind for c in result.conditions] == ["prompt", "majority"]
    assert result.conditions[1].spec == "majority of 30"
    log = RunLog()
    log.remember_scores(result.conditions)  # a fine-tune side kind is not a reference line while training
    assert list(log.prompting_scores) == ["zero"]


def test_a_kind_is_on_one_side():
    with pytest.raises(ValueError, match="side"):
        with registered(ConditionKind("odd", _majority, "neither")):
            pass
    assert "odd" not in KINDS
