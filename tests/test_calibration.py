"""Contextual calibration (--calibrate): the arithmetic, and a planted label bias measurably removed."""

from __future__ import annotations

import numpy as np
import pytest
from fewshot_data import EVAL, POOL, TEMPLATE

from ftpe_magics.engine.prompting.calibration import calibrated, content_free_bias, log_distribution


def test_a_content_free_input_scores_every_label_alike_after_calibration():
    content_free = np.log(np.array([[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.8, 0.1, 0.1]]))
    bias = content_free_bias(content_free)
    assert np.allclose(np.exp(bias), [[0.7, 0.2, 0.1]])  # the mean distribution of the three
    flat = calibrated(np.log(np.array([[0.7, 0.2, 0.1]])) + 5.0, bias)  # any scale of log-likelihoods
    assert np.allclose(flat, flat[0, 0])
    query = calibrated(np.log(np.array([[0.6, 0.35, 0.05]])), bias)  # below the bias on label 0: not label 0
    assert query.argmax() == 1
    assert np.allclose(np.exp(log_distribution(np.array([[1.0, 2.0]]))).sum(), 1.0)


def _share(result, label: str) -> float:
    predictions = result.conditions[0].predictions
    return predictions.count(label) / len(predictions)


@pytest.mark.parametrize("select", ["balanced", "similar"])
def test_calibration_removes_a_planted_label_bias(tiny_session, select):
    plain = tiny_session.fewshot(TEMPLATE, POOL, EVAL, k=2, select=select)
    majority = max(("positive", "negative"), key=lambda label: _share(plain, label))
    assert _share(plain, majority) >= 0.8  # the planted bias: one label for at least 80% of a balanced set
    fixed = tiny_session.fewshot(TEMPLATE, POOL, EVAL, k=2, select=select, calibrate=True)
    assert abs(_share(fixed, majority) - 0.5) < abs(_share(plain, majority) - 0.5)
    assert "calibrated" in fixed.conditions[0].spec
    assert fixed.conditions[0].seconds > 0


def test_a_calibrated_configuration_runs_in_compare(tiny_session):
    tiny_session.fewshot(TEMPLATE, POOL, EVAL, k=2, select="balanced", calibrate=True, name="cal")
    tiny_session.fewshot(TEMPLATE, POOL, EVAL, k=2, select="balanced", name="raw")
    both = tiny_session.compare("a: fewshot cal\nb: fewshot raw", EVAL)
    calibrated_run, raw_run = both.conditions
    assert calibrated_run.predictions != raw_run.predictions
    assert "calibrated" in calibrated_run.spec and "calibrated" not in raw_run.spec


def test_calibration_is_part_of_the_cache_key(tiny_session):
    from ftpe_magics.engine.data.examples import load_examples
    from ftpe_magics.engine.evaluation.identity import fewshot_identity
    from ftpe_magics.engine.prompting.fewshot import FewShotConfig
    from ftpe_magics.engine.prompting.templates import ExampleTemplate

    pool = load_examples(POOL)
    plain = FewShotConfig("c", ExampleTemplate.from_body(TEMPLATE), pool, k=2)
    calibrated_config = FewShotConfig("c", ExampleTemplate.from_body(TEMPLATE), pool, k=2, calibrate=True)
    assert fewshot_identity(plain) != fewshot_identity(calibrated_config)
    assert "calibrate" not in fewshot_identity(plain)  # results cached before the option existed still hit
