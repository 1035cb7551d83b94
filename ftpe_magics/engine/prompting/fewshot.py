"""Choosing the k demonstrations of a few-shot prompt.

``random`` and ``balanced`` use one set of demonstrations for the whole eval set (so its prefix is
computed once); ``similar`` picks, per query, the nearest training examples by the session
model's own mean-pooled hidden states, which needs no extra model.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from ..data.examples import Examples
from ..errors import FtpeError
from .templates import ExampleTemplate


@dataclass
class FewShotConfig:
    """A named few-shot configuration, kept in the session so ``%%compare`` can run it again."""

    name: str
    template: ExampleTemplate
    train: Examples
    k: int = 4
    select: str = "random"
    seed: int = 0
    orders: int = 1
    allow_overlap: bool = False
    calibrate: bool = False  # contextual calibration of label scores (see .calibration)
    verbalizer: dict[str, str] | None = None  # label -> the word the prompt uses for it (None: the labels)


def _random(pool: list[int], k: int, rng: random.Random) -> list[int]:
    return rng.sample(pool, min(k, len(pool)))


def _balanced(pool: list[int], labels: list[str], k: int, rng: random.Random) -> list[int]:
    by_label: dict[str, list[int]] = {}
    for index in pool:
        by_label.setdefault(labels[index], []).append(index)
    for members in by_label.values():
        rng.shuffle(members)
    label_order = sorted(by_label)
    rng.shuffle(label_order)
    chosen: list[int] = []
    while len(chosen) < min(k, len(pool)):
        for label in label_order:
            if by_label[label] and len(chosen) < k:
                chosen.append(by_label[label].pop())
    rng.shuffle(chosen)
    return chosen


def select_demos(config: FewShotConfig, eval_data: Examples, pool: list[int], k: int,
                 embed=None) -> list[list[int]]:
    """Training indices of the demonstrations, one list per eval example."""
    if k == 0:
        return [[] for _ in range(len(eval_data))]
    if not pool:
        raise FtpeError("The few-shot training pool is empty (after removing overlap with the eval set).")
    rng = random.Random(config.seed)
    if config.select == "random":
        shared = _random(pool, k, rng)
    elif config.select == "balanced":
        shared = _balanced(pool, config.train.labels, k, rng)
    else:
        train_vectors = embed([config.train.texts[i] for i in pool])
        query_vectors = embed(eval_data.texts)
        similarity = query_vectors @ train_vectors.T  # one matrix product for every query
        k = min(k, len(pool))
        top = np.argpartition(-similarity, k - 1, axis=1)[:, :k]  # the k nearest, unordered, in O(pool)
        order = np.take_along_axis(similarity, top, axis=1).argsort(axis=1)[:, ::-1]
        nearest = np.take_along_axis(top, order, axis=1)
        # most similar last, right before the query, as retrieval-augmented prompting usually does
        return [[pool[j] for j in reversed(row)] for row in nearest]
    return [list(shared) for _ in range(len(eval_data))]


def reorder(demos: list[list[int]], order_seed: int) -> list[list[int]]:
    """The same demonstrations in another order (order sensitivity); one permutation for shared demos."""
    rng = random.Random(order_seed)
    permutation_cache: dict[tuple, list[int]] = {}
    out = []
    for row in demos:
        key = tuple(row)
        if key not in permutation_cache:
            shuffled = list(row)
            rng.shuffle(shuffled)
            permutation_cache[key] = shuffled
        out.append(permutation_cache[key])
    return out


def verbalized(examples: Examples, words: dict[str, str]) -> Examples:
    """The same examples with every label written as its word (the rows, and so the texts, are unchanged)."""
    return Examples(examples.rows, examples.input_col, examples.label_col, [words[label] for label in examples.labels],
                    [words[label] for label in examples.label_set])
