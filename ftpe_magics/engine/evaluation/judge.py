"""A model as the grader: ``--metric judge`` and pairwise judgements of two conditions.

For answers with no one right string (a rewrite, a summary), a model reads the output beside the reference or a
rubric and grades it. The grade is not generated: each grade of a fixed set is scored as the judge's answer, the
probabilities over the set are normalised, and the score is the expected grade scaled to [0, 1]. So a judgement
is deterministic (the same output gets the same score in every kernel) and is cached like every other score.

Judges are biased towards the answer shown first; a pairwise judgement therefore asks twice with the two answers
swapped and counts a preference only when both orders agree. How far to trust a judge is measured on the rows:
its agreement with exact match on the same outputs is reported beside its scores.
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import FtpeError
from ..inference.generation import render_prompts
from ..inference.scoring import label_logprobs
from ..prompting.templates import fill, template_fields
from .metrics import exact_match

DEFAULT_GRADES = ("no", "yes")
# the fields a judge template must have: the output, and what to hold it against
OUTPUT_FIELD, HELD_AGAINST = "output", ("reference", "rubric")
PAIRWISE_TEMPLATE = ("Two answers to the same request follow. Reference answer: {reference}\n\n"
                     "Answer 1: {first}\n\nAnswer 2: {second}\n\n"
                     "Which answer is closer to the reference? Reply with 1 or 2.")
PAIR_GRADES = ("1", "2")


@dataclass(frozen=True)
class Judge:
    """The judge's prompt (a template with ``{output}`` and ``{reference}`` or ``{rubric}``, any data column or
    notebook variable) and its grades, worst first."""

    template: str
    grades: tuple[str, ...] = DEFAULT_GRADES

    def identity(self) -> dict:
        return {"template": self.template, "grades": list(self.grades)}


def judge_from_options(template_name: str | None, grades: str | None,
                       namespace: Mapping[str, Any] | None) -> Judge:
    """The judge ``--judge-template VAR --judge-grades a,b,c`` names, checked before anything runs."""
    if not template_name:
        raise FtpeError("--metric judge needs --judge-template VAR: a notebook variable holding the judge's prompt, "
                        "with {output} and {reference} (or {rubric}).")
    template = (namespace or {}).get(template_name)
    if not isinstance(template, str):
        raise FtpeError(f"--judge-template {template_name}: no notebook variable of that name holds a string; "
                        f"define {template_name} = '... {{output}} ... {{reference}} ...'.")
    fields = template_fields(template)
    if OUTPUT_FIELD not in fields or not any(name in fields for name in HELD_AGAINST):
        missing = [f"{{{name}}}" for name in (OUTPUT_FIELD,) if name not in fields] + \
            ([] if any(name in fields for name in HELD_AGAINST) else ["{reference} or {rubric}"])
        raise FtpeError(f"--judge-template {template_name} lacks {' and '.join(missing)}: the judge must see the "
                        "output and what to grade it against.")
    chosen = tuple(word.strip() for word in (grades or ",".join(DEFAULT_GRADES)).split(",") if word.strip())
    if len(chosen) < 2 or len(set(chosen)) < len(chosen):
        raise FtpeError(f"--judge-grades {grades!r}: give two or more distinct grades, worst first (no,yes or "
                        "1,2,3,4,5).")
    return Judge(template, chosen)


def grade_probabilities(model, tokenizer, prompts: list[str], grades: Sequence[str],
                        batch_size: int) -> tuple[np.ndarray, bool]:
    """Each prompt's probability of each grade as the judge's answer (normalised over the grades), through the
    chat template when the tokenizer has one; and whether the stop button cut the pass short."""
    rendered, raw = render_prompts(tokenizer, prompts, None, raw=False)
    continuations = [(" " if raw else "") + grade for grade in grades]
    scored = label_logprobs(model, tokenizer, rendered, continuations, batch_size, add_special_tokens=raw)
    logprobs = scored.normalised(list(grades), "none")
    probabilities = np.exp(logprobs - logprobs.max(axis=1, keepdims=True))
    return probabilities / probabilities.sum(axis=1, keepdims=True), scored.interrupted


def judged_scores(judge: Judge, model, tokenizer, outputs: list[str], references: list[str],
                  rows: Sequence[Mapping[str, Any]], batch_size: int) -> tuple[list[float], bool]:
    """The expected grade of every output, scaled so the worst grade is 0 and the best 1."""
    prompts = [fill(judge.template, ChainMap({"output": output, "reference": reference}, row))
               for output, reference, row in zip(outputs, references, rows, strict=True)]
    probabilities, interrupted = grade_probabilities(model, tokenizer, prompts, judge.grades, batch_size)
    values = np.linspace(0.0, 1.0, len(judge.grades))
    return [float(row @ values) for row in probabilities], interrupted


def agreement_with_exact(scores: list[float], outputs: list[str], references: list[str]) -> dict:
    """How often the judge (score >= 0.5 as a pass) agrees with exact match on the same rows, and Cohen's kappa
    (agreement beyond what two raters with these pass rates would reach by chance)."""
    judged = np.array([score >= 0.5 for score in scores])
    exact = np.array([exact_match(o, r) == 1.0 for o, r in zip(outputs, references, strict=True)])
    agreement = float(np.mean(judged == exact))
    chance = float(judged.mean() * exact.mean() + (1 - judged.mean()) * (1 - exact.mean()))
    kappa = (agreement - chance) / (1 - chance) if chance < 1 else float("nan")
    return {"agreement": agreement, "kappa": kappa, "judge_pass": float(judged.mean()),
            "exact_pass": float(exact.mean()), "n": len(scores)}


def agreement_notice(condition: str, agreement: dict) -> str:
    kappa = "undefined" if agreement["kappa"] != agreement["kappa"] else f"{agreement['kappa']:.2f}"
    return (f"{condition}: the judge agrees with exact match on {agreement['agreement']:.0%} of "
            f"{agreement['n']} rows (Cohen's kappa {kappa}; it passes {agreement['judge_pass']:.0%}, exact match "
            f"{agreement['exact_pass']:.0%}).")


def pairwise(model, tokenizer, first: list[str], second: list[str], references: list[str], batch_size: int,
             template: str = PAIRWISE_TEMPLATE) -> dict:
    """Which of two conditions' outputs the judge prefers, row by row, asked in both orders: a preference counts
    only when the two orders agree; the rest are position-biased and left out."""
    rows = list(zip(first, second, references, strict=True))
    asked = [fill(template, {"first": a, "second": b, "reference": r}) for a, b, r in rows]
    swapped = [fill(template, {"first": b, "second": a, "reference": r}) for a, b, r in rows]
    probabilities, stopped = grade_probabilities(model, tokenizer, asked + swapped, PAIR_GRADES, batch_size)
    if stopped:
        raise KeyboardInterrupt
    in_order, reversed_order = probabilities[:len(rows)], probabilities[len(rows):]
    first_wins = (in_order[:, 0] > in_order[:, 1]) & (reversed_order[:, 1] > reversed_order[:, 0])
    second_wins = (in_order[:, 1] > in_order[:, 0]) & (reversed_order[:, 0] > reversed_order[:, 1])
    ties = np.array([a.strip() == b.strip() for a, b, _ in rows])  # the same answer: nothing to prefer
    first_wins, second_wins = first_wins & ~ties, second_wins & ~ties
    return {"first": int(first_wins.sum()), "second": int(second_wins.sum()), "same_output": int(ties.sum()),
            "position_biased": int(len(rows) - first_wins.sum() - second_wins.sum() - ties.sum()), "n": len(rows)}
