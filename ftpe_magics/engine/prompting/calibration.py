"""Contextual calibration (Zhao et al., 2021, "Calibrate Before Use").

A few-shot prompt biases a model towards some labels (the majority or the last label among the
demonstrations, common words) whatever the query says. The bias is measured by asking the same
prompt about inputs with no content ("N/A", "", "[MASK]"): their mean label distribution ``p_cf``
is what the prompt alone makes the model say. Dividing every prediction's label distribution by it
(subtracting ``log p_cf``) makes a content-free input score every label alike, so what remains is
what the query itself moves.
"""

from __future__ import annotations

import numpy as np

CONTENT_FREE = ("N/A", "", "[MASK]")


def log_distribution(scores: np.ndarray) -> np.ndarray:
    """Label scores (log-likelihoods, any scale) as a log-distribution over the label set, per row."""
    shifted = scores - scores.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def content_free_bias(scores: np.ndarray, inputs: int = len(CONTENT_FREE)) -> np.ndarray:
    """``log p_cf`` per prompt from the label scores of its ``inputs`` content-free queries (rows grouped by
    prompt): the log of their mean label distribution."""
    probabilities = np.exp(log_distribution(scores)).reshape(-1, inputs, scores.shape[1]).mean(axis=1)
    return np.log(probabilities)


def calibrated(scores: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Label scores with the prompt's content-free bias divided out (``bias`` one row per score row)."""
    return log_distribution(scores) - bias
