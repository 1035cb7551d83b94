"""Contextual calibration (--calibrate): the arithmetic, and a planted label bias measurably removed."""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pytest
import torch
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


@contextmanager
def planted_bias(session, label: str, other: str, offset: float = 6.0):
    """Add ``offset`` to the logits of the first token of ``label`` (in each form a template may produce) at every
    position: a bias of the model alone, the same for every input, which contextual calibration must remove."""
    tokenizer = session.tokenizer

    def first(word: str) -> set[int]:
        return {tokenizer(form, add_special_tokens=False)["input_ids"][0] for form in (word, " " + word)}

    planted = torch.zeros(session.base_model.config.vocab_size)
    planted[sorted(first(label) - first(other))] = offset
    handle = session.base_model.lm_head.register_forward_hook(lambda module, inputs, logits: logits + planted)
    try:
        yield
    finally:
        handle.remove()


@pytest.mark.parametrize("select", ["balanced", "similar"])
def test_calibration_removes_a_planted_label_bias(tiny_session, select):
    with planted_bias(tiny_session, "positive", "negative"):
        plain = tiny_session.fewshot(TEMPLATE, POOL, EVAL, k=2, select=select, no_cache=True)
        fixed = tiny_session.fewshot(TEMPLATE, POOL, EVAL, k=2, select=select, calibrate=True, no_cache=True)
    assert _share(plain, "positive") >= 0.9  # the planted bias: one label for (nearly) every example of a balanced set
    assert abs(_share(fixed, "positive") - 0.5) < abs(_share(plain, "positive") - 0.5)
    assert "calibrated" in fixed.conditions[0].spec
    assert fixed.conditions[0].seconds > 0
    unbiased = tiny_session.fewshot(TEMPLATE, POOL, EVAL, k=2, select=select, calibrate=True, no_cache=True)
    assert fixed.conditions[0].predictions == unbiased.conditions[0].predictions  # a constant bias cancels exactly


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
