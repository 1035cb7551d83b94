"""Seeded draws from a labelled set, written once: a held-out share, nested draws, and the pool without the eval
set's texts. Every split of the engine (a fine-tune's validation, a few-shot search's, a learning curve's sizes)
comes from :func:`seeded_order`, so the same seed always shuffles the same way.
"""

from __future__ import annotations

import random

from ..errors import FtpeError
from .examples import Examples, normalise_text


def seeded_order(count: int, seed: int) -> list[int]:
    """0..count-1 in the order of one seeded shuffle (Python's own generator: the user's RNGs are untouched)."""
    order = list(range(count))
    random.Random(seed).shuffle(order)
    return order


def held_out_size(count: int, share: float) -> int:
    """How many of ``count`` examples a share holds out: rounded, and at least one."""
    return max(1, round(share * count))


def split_off(data: Examples, share: float, seed: int, *, in_order: bool = False) -> tuple[Examples, Examples]:
    """(the rest, the held-out share) of one seeded shuffle; ``in_order`` keeps both in the data's own order (a
    pool demonstrations are drawn from), else both are in shuffled order (a training set)."""
    if not 0 < share < 1:
        raise FtpeError("--val-split must be between 0 and 1, e.g. 0.1.")
    order = seeded_order(len(data), seed)
    size = held_out_size(len(data), share)
    rest, held = order[size:], order[:size]
    return (data.subset(sorted(rest)), data.subset(sorted(held))) if in_order else (data.subset(rest),
                                                                                    data.subset(held))


def nested_draws(pool: Examples, sizes: list[int], seed: int) -> dict[int, Examples]:
    """The first n of one seeded shuffle for each n: a bigger draw contains every smaller one."""
    if sizes[-1] > len(pool):
        raise FtpeError(f"--sizes {sizes[-1]} is more than the {len(pool)} usable examples of --train; give sizes up "
                        f"to {len(pool)}, or a bigger --train.")
    order = seeded_order(len(pool), seed)
    return {size: pool.subset(sorted(order[:size])) for size in sizes}


def overlapping(train: Examples, eval_data: Examples) -> tuple[list[int], set[int]]:
    """Eval indices whose normalised text is also in the training pool, and those training indices."""
    train_keys: dict[str, list[int]] = {}
    for index, text in enumerate(train.texts):
        train_keys.setdefault(normalise_text(text), []).append(index)
    eval_hits, train_hits = [], set()
    for index, text in enumerate(eval_data.texts):
        key = normalise_text(text)
        if key in train_keys:
            eval_hits.append(index)
            train_hits.update(train_keys[key])
    return eval_hits, train_hits


def without_eval_texts(train: Examples, eval_data: Examples) -> tuple[Examples, int]:
    """``train`` without the examples whose text is also in the eval set (never trained on or drawn from), and how
    many were removed."""
    _, leaked = overlapping(train, eval_data)
    return train.subset([i for i in range(len(train)) if i not in leaked]), len(leaked)


def folds(data: Examples, count: int, seed: int) -> list[tuple[Examples, Examples]]:
    """``count`` folds of one seeded shuffle, each as (the other folds, the fold): every example is held out
    exactly once; both sides keep the data's own order."""
    if not 1 < count <= len(data):
        raise FtpeError(f"--cv {count} needs at least {count} usable examples (there are {len(data)}) and at least 2 "
                        "folds; use a smaller --cv, or --cv 1 for one split.")
    order = seeded_order(len(data), seed)
    parts = [sorted(order[fold::count]) for fold in range(count)]
    return [(data.subset(sorted(i for other, part in enumerate(parts) if other != fold for i in part)),
             data.subset(parts[fold])) for fold in range(count)]
