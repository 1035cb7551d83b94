"""Scoring work one call would otherwise repeat, done once: label scores of a prompt already scored and the
key/value cache of a prompt prefix already run.

A few-shot search, its cross-validation folds, the calibration pass, the orders of a prompt, the sizes of a
learning curve and the conditions of one ``%%compare`` keep building prompts that were built before: the
zero-shot candidate of every fold scores the same pool queries as the ``prompt`` line, the content-free inputs
of calibration start with the very demonstrations the queries start with, two orders of the same demonstrations
share their instructions. A :class:`SharedScoring` lives for one such call (``Workbench.sharing_work``) and
holds the token ids of every text it tokenised (a pool's prompts are tokenised once per call), and, per set
of weights:

- the label log-probabilities of every context scored (by its exact token ids, the label tokens and whether
  special tokens were added), so a context is never run twice;
- the key/value caches of the shared prefixes run (a few, least recently used dropped first): a new prefix
  starts from the cached one it shares most tokens with, cropped, and runs only the rest.

Results equal unshared scoring to float precision (a prefix run in two pieces instead of one); the tests hold
them to 1e-5. Nothing outlives the call, so nothing goes stale when weights change between calls.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# prefixes kept per set of weights (the default model's cache is about 45 KB a token: 8 x 300 tokens ~ 110 MB)
MAX_PREFIXES = 8
MAX_ROWS = 200_000  # label-score rows kept in all (150 labels: 1.2 KB a row)


@dataclass
class WeightsShare:
    """What was computed with one set of weights during the call."""

    rows: dict[tuple, np.ndarray] = field(default_factory=dict)
    prefixes: OrderedDict[tuple[int, ...], Any] = field(default_factory=OrderedDict)


@dataclass
class SharedScoring:
    """The call's shared work, per weights key, with what it ran and what it reused (tokens)."""

    shares: dict[str, WeightsShare] = field(default_factory=dict)
    token_ids: dict[tuple[bool, str], list[int]] = field(default_factory=dict)  # (special tokens, text) -> ids
    tokens_run: int = 0
    tokens_reused: int = 0

    def for_weights(self, key: str) -> ScoringShare:
        return ScoringShare(self, self.shares.setdefault(key, WeightsShare()))

    @property
    def row_count(self) -> int:
        return sum(len(share.rows) for share in self.shares.values())


@dataclass
class ScoringShare:
    """One set of weights' share, as the scorer uses it."""

    call: SharedScoring
    share: WeightsShare

    def known_rows(self, labels_key: tuple, context_ids: list[list[int]]) -> dict[int, np.ndarray]:
        """The contexts (by position) scored before with these labels, and their scores."""
        found = {}
        for index, ids in enumerate(context_ids):
            row = self.share.rows.get((labels_key, tuple(ids)))
            if row is not None:
                found[index] = row
                self.call.tokens_reused += len(ids)
        return found

    def keep_rows(self, labels_key: tuple, context_ids: list[list[int]], scores: np.ndarray,
                  done: np.ndarray) -> None:
        for ids, row, complete in zip(context_ids, scores, done, strict=True):
            if complete and self.call.row_count < MAX_ROWS:
                self.share.rows[(labels_key, tuple(ids))] = row.copy()

    def prefix_cache(self, model, tokens: list[int], run) -> tuple[Any, int]:
        """The key/value cache of ``tokens`` and how many tokens it took to make: from the cached prefix sharing
        most of them (cropped to what is shared), running only the rest with ``run(ids, cache) -> cache``."""
        key = tuple(tokens)
        prefixes = self.share.prefixes
        shared, start = 0, None
        for cached in prefixes:
            length = _common_length(cached, key)
            if length > shared:
                shared, start = length, cached
        if shared == len(key) and start == key:
            prefixes.move_to_end(key)
            self.call.tokens_reused += len(key)
            return prefixes[key], 0
        base = None
        if shared:
            prefixes.move_to_end(start)
            base = copy.deepcopy(prefixes[start])
            if len(start) > shared:  # a negative count removes tokens on every transformers version allowed
                base.crop(shared - len(start))
            self.call.tokens_reused += shared
        cache = base if shared == len(key) else run(tokens[shared:], base)
        prefixes[key] = cache
        while len(prefixes) > MAX_PREFIXES:
            prefixes.popitem(last=False)
        return cache, len(key) - shared


def _common_length(first: tuple[int, ...], second: tuple[int, ...]) -> int:
    length = min(len(first), len(second))
    for index in range(length):
        if first[index] != second[index]:
            return index
    return length
