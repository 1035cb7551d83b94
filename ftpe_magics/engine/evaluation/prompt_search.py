"""``%%fewshot --search N``: the prompt side's fair search, on a validation split carved from the training pool.

A few-shot prompt is only as good as the choices behind it (which demonstrations, how many, in which order,
which instruction, which words for the labels), and one unsearched draw can move accuracy by many points. The
search tries N candidate configurations on a validation split of ``--train``, keeps the best and scores only
that one on ``--eval``. The eval set is never read while searching: eval texts are first removed from the pool
(the leakage guard), then the split is drawn (seeded), and candidates are scored on the split alone.

The space is small and discrete, and each candidate is one scoring pass, so candidates are drawn at random
(seeded, without repeats); the first is always the configuration the options describe, so the search never
keeps something worse on validation than the unsearched prompt.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..data.examples import Examples
from ..data.splits import folds, held_out_size, split_off, without_eval_texts
from ..errors import ContextTooLong, FtpeError
from ..options import SELECTIONS
from ..prompting.fewshot import FewShotConfig
from ..prompting.templates import ExampleTemplate
from .evaluator import ConditionResult


@dataclass(frozen=True)
class Candidate:
    """One point of the space; ``instruction`` and ``verbalizer`` index the lists given (0: the template's own
    instructions, the labels as they are)."""

    k: int
    select: str
    seed: int
    instruction: int = 0
    verbalizer: int = 0
    calibrate: bool = False


def check_verbalizers(verbalizers: Sequence[Mapping[str, str]], label_set: list[str]) -> list[dict[str, str]]:
    """Each verbalizer maps every label to a distinct, non-empty word."""
    checked = []
    for number, words in enumerate(verbalizers, 1):
        if not isinstance(words, Mapping):
            raise FtpeError(f"--verbalizers: item {number} is not a dict of label -> word, e.g. "
                            "{'positive': 'great', 'negative': 'terrible'}.")
        words = {str(label): str(word).strip() for label, word in words.items()}
        missing = [label for label in label_set if not words.get(label)]
        if missing:
            raise FtpeError(f"--verbalizers: item {number} gives no word for label {missing[0]!r}; give one for "
                            f"each of {', '.join(label_set)}.")
        chosen = [words[label] for label in label_set]
        if len(set(chosen)) < len(chosen):
            raise FtpeError(f"--verbalizers: item {number} gives two labels the same word; the words must differ.")
        checked.append({label: words[label] for label in label_set})
    return checked


def search_split(train: Examples, eval_data: Examples, val_split: float, seed: int) -> tuple[Examples, Examples, int]:
    """The pool the candidates draw from and the validation split they are scored on, with the number of
    training examples removed because their text is also in the eval set (removed before the split)."""
    kept, leaked = without_eval_texts(train, eval_data)
    return (*_validation_split(kept, val_split, seed), leaked)


def _validation_split(kept: Examples, val_split: float, seed: int) -> tuple[Examples, Examples]:
    size = held_out_size(len(kept), val_split)
    if size < 2 or len(kept) - size < 1:
        raise FtpeError(f"--val-split {val_split:g} of {len(kept)} usable training examples leaves "
                        f"{size} for validation and {len(kept) - size} to draw from; the search needs both (a "
                        "bigger --train, or another --val-split).")
    return split_off(kept, val_split, seed, in_order=True)


CV_FOLDS, CV_UP_TO = 5, 512  # the default: 5-fold cross-validation while the usable pool is at most 512 examples


def search_folds(train: Examples, eval_data: Examples, val_split: float, seed: int,
                 cv: int | None) -> tuple[Examples, list[tuple[Examples, Examples]], int]:
    """The pool the chosen configuration draws from, the (demonstrations, validation) pairs each candidate is
    scored on, and how many training examples were removed for being in the eval set. ``cv`` K > 1: K folds of
    the whole usable pool, and the chosen configuration draws from all of it; 1: today's single ``val_split``."""
    kept, leaked = without_eval_texts(train, eval_data)
    count = cv or (min(CV_FOLDS, len(kept)) if len(kept) <= CV_UP_TO else 1)
    if count <= 1:  # one split (asked for, or too few examples to fold: its own error says so)
        pool, val = _validation_split(kept, val_split, seed)
        return pool, [(pool, val)], leaked
    return kept, folds(kept, count, seed), leaked


def merged(results: list[ConditionResult]) -> ConditionResult:
    """The folds of one candidate as one result: every validation example once, the accuracy pooled over them, and
    each fold's accuracy in ``extra["fold_accuracies"]``."""
    def joined(name: str) -> list:
        return [item for result in results for item in getattr(result, name)]

    first = results[0]
    return dataclasses.replace(
        first, references=joined("references"), predictions=joined("predictions"), outputs=joined("outputs"),
        scores=joined("scores"), prompt_tokens=joined("prompt_tokens"), samples=None,
        seconds=sum(result.seconds for result in results), interrupted=any(result.interrupted for result in results),
        extra={**first.extra, "fold_accuracies": [result.accuracy for result in results]})


def draw_candidates(count: int, first: Candidate, ks: list[int], instructions: int, verbalizers: int,
                    pool_size: int, seed: int) -> list[Candidate]:
    """``count`` distinct candidates: the options' own configuration first, then (when 0 is among ``ks``) the same
    template with no demonstrations and no calibration, so the search can always choose the zero-shot prompt;
    calibration on or off is an axis like the others."""
    ks = [k for k in ks if k <= pool_size] or [min(first.k, pool_size)]
    rng = random.Random(seed)
    chosen = [dataclasses.replace(first, k=min(first.k, pool_size))]
    zero_shot = dataclasses.replace(first, k=0, calibrate=False)
    if 0 in ks and zero_shot not in chosen and count > 1:
        chosen.append(zero_shot)
    for _ in range(count * 50):  # the seed axis is unbounded: distinct candidates are never scarce
        if len(chosen) >= count:
            break
        candidate = Candidate(rng.choice(ks), rng.choice(SELECTIONS), rng.randrange(10_000),
                              rng.randrange(instructions + 1), rng.randrange(verbalizers + 1), rng.random() < 0.5)
        if candidate not in chosen:
            chosen.append(candidate)
    return chosen


def configure(base: FewShotConfig, candidate: Candidate, instructions: Sequence[str],
              verbalizers: Sequence[dict[str, str]]) -> FewShotConfig:
    """The few-shot configuration a candidate stands for."""
    template = base.template
    if candidate.instruction:
        template = ExampleTemplate(template.template, instructions[candidate.instruction - 1])
    return dataclasses.replace(base, k=candidate.k, select=candidate.select, seed=candidate.seed, template=template,
                               verbalizer=verbalizers[candidate.verbalizer - 1] if candidate.verbalizer else None,
                               calibrate=candidate.calibrate)


def _row(number: int, candidate: Candidate, config: FewShotConfig, status: str,
         result: ConditionResult | None = None) -> dict[str, Any]:
    return {"candidate": number, "k": candidate.k, "select": candidate.select, "seed": candidate.seed,
            "calibrate": candidate.calibrate,
            "instruction": _short(config.template.instructions),
            "label_words": "/".join(config.verbalizer.values()) if config.verbalizer else "(labels)",
            "val_accuracy": result.accuracy if result else float("nan"),
            "val_spread": float(np.std(result.extra["fold_accuracies"])) if result and
            len(result.extra.get("fold_accuracies", ())) > 1 else float("nan"),
            "prompt_tokens": result.mean_prompt_tokens if result else float("nan"), "status": status}


def run_search(score: Callable[[str, FewShotConfig], ConditionResult], base: FewShotConfig,
               candidates: list[Candidate], instructions: Sequence[str], verbalizers: Sequence[dict[str, str]],
               say: Callable[[str], None] = lambda message: None) -> tuple[FewShotConfig, list[dict[str, Any]]]:
    """Score every candidate on the validation split; the best (ties: fewer prompt tokens, then the earlier)
    and the search log, one row per candidate tried.

    A candidate whose prompt is longer than the model reads is logged as ``too long`` and skipped. The stop
    button, in a forward pass or between candidates, ends the search: the best candidate so far is kept and
    the output says after how many of the candidates it stopped."""
    log: list[dict[str, Any]] = []
    best: tuple[float, float, int] | None = None
    stopped = False
    for number, candidate in enumerate(candidates):
        config = configure(base, candidate, instructions, verbalizers)
        try:
            result = score(f"candidate {number}", config)
        except ContextTooLong:
            log.append(_row(number, candidate, config, "too long"))
            continue
        except KeyboardInterrupt:
            stopped = True
            break
        if result.interrupted:
            stopped = True
            break
        log.append(_row(number, candidate, config, "scored", result))
        key = (result.accuracy, -result.mean_prompt_tokens, -number)
        if best is None or key > best:
            best = key
    if best is None:
        reason = "Stopped before any candidate was scored" if stopped else \
            "Every candidate's prompt is longer than the model reads"
        raise FtpeError(f"{reason}: nothing was searched. Use a smaller --search-k or shorter texts.")
    _say_summary(say, log, len(candidates), stopped)
    winner = -best[2]
    for row in log:
        row["best"] = row["candidate"] == winner
    return configure(base, candidates[winner], instructions, verbalizers), log


def _say_summary(say: Callable[[str], None], log: list[dict[str, Any]], total: int, stopped: bool) -> None:
    skipped = sum(row["status"] == "too long" for row in log)
    if skipped:
        say(f"Search: skipped {skipped} candidate(s) whose prompt is longer than the model reads (logged as 'too "
            "long').")
    if stopped:
        scored = sum(row["status"] == "scored" for row in log)
        say(f"Search stopped after {len(log)} of {total} candidates ({scored} scored); the best so far is kept and "
            "used.")


def _short(text: str) -> str:
    text = " ".join(text.split())
    return "(none)" if not text else text if len(text) <= 60 else text[:57] + "..."
