"""``result.verdict()``: the comparison's answer to "prompt or fine-tune?", in sentences.

Every number in a sentence is one of the comparison's table (accuracy, its interval, McNemar p, consistency,
order spread, prompt tokens, latency, training time), or computed from two of them in a way the sentence
states (a difference, a ratio), so a reader can trace each claim to the table above it. When the two sides
are not significantly different the verdict says so, whatever the point estimates are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .condition_kinds import FINETUNE_SIDE, PROMPT_SIDE, kinds_on
from .stats import (
    bootstrap_interval,
    detectable_gap,
    is_binary,
    mcnemar_p,
    mcnemar_sample_size,
    paired_difference_interval,
    paired_test,
)

if TYPE_CHECKING:
    from .evaluator import ConditionResult

ALPHA = 0.05


@dataclass
class Verdict:
    """The sentences, and the numbers they were written from (``numbers``), for tests and for tools."""

    sentences: list[str]
    numbers: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return "\n".join(self.sentences)

    def _repr_pretty_(self, printer, cycle: bool) -> None:
        printer.text(str(self))


def paired_gap_interval(better: ConditionResult, other: ConditionResult) -> tuple[tuple[float, float], str]:
    """95% interval of the accuracy difference on the same examples, and its method's name: Newcombe's paired score
    interval for 0/1 outcomes; a bootstrap of the per-example differences (pairs kept together) for mean scores."""
    if is_binary(better.scores) and is_binary(other.scores):
        return paired_difference_interval(better.correct, other.correct), "Newcombe's paired score interval"
    return bootstrap_interval(np.asarray(better.scores) - np.asarray(other.scores)), "paired bootstrap"


def resolution(prompt: ConditionResult, finetune: ConditionResult, gap: float, p: float) -> tuple[str, dict]:
    """What would decide it: the smallest gap these eval examples detect (80% power, McNemar, at the observed
    disagreement), and, for a gap that is not significant, about how many eval examples would resolve it."""
    a, b = np.asarray(finetune.correct, bool), np.asarray(prompt.correct, bool)
    n, discordant = a.size, float(np.mean(a != b)) if a.size else 0.0
    smallest = detectable_gap(n, discordant)
    needed = mcnemar_sample_size(discordant, gap) if p >= ALPHA else None
    numbers = {"detectable_gap": smallest, "eval_needed": None if needed is None or needed == float("inf")
               else int(np.ceil(needed))}
    if discordant == 0:
        return (f"Resolution: the two agree on all {n} examples, so no gap can show on them; a larger or harder "
                "eval set is what would tell them apart."), numbers
    reach = (f"a gap of {smallest * 100:.1f} points or more would be detected with 80% power" if smallest is not None
             else "not even the largest gap that disagreement allows would be detected with 80% power")
    sentence = f"Resolution: on these {n} examples (they disagree on {discordant:.0%} of them), {reach}"
    if numbers["eval_needed"] is not None:
        sentence += (f"; the observed gap of {abs(gap) * 100:.1f} points would need about {numbers['eval_needed']:,} "
                     "eval examples to be detected with that power")
    elif p >= ALPHA:
        sentence += "; the two are tied on these examples, so no eval size would show a gap"
    return sentence + ".", numbers


def _side(conditions: list[ConditionResult], side: str) -> list[ConditionResult]:
    return [c for c in conditions if c.kind in kinds_on(side) and not c.interrupted]


def _on_train(lines: list[ConditionResult]) -> bool:
    """Whether the side's best is chosen before --eval is read: some line of the side has a score on --train."""
    return any("selection" in c.extra for c in lines)


def train_score(result: ConditionResult) -> float | None:
    """A line's accuracy on --train, or None when it has none (a curve keeps its own per size)."""
    chosen = result.extra.get("selection")
    return chosen["accuracy"] if chosen else None


def choose(candidates: dict[str, tuple[float | None, float, float]]) -> str | None:
    """The side's best among ``label -> (score on --train or None, prompt tokens, eval accuracy)``: by the score
    on --train among the lines that have one (ties: the fewer prompt tokens), so the eval set decides nothing;
    by eval accuracy only when no line of the side has a score on --train (which the verdict then says)."""
    scored = {label: value for label, value in candidates.items() if value[0] is not None}
    if scored:
        return max(scored, key=lambda label: (scored[label][0], -scored[label][1]))
    return max(candidates, key=lambda label: candidates[label][2]) if candidates else None


def _best(conditions: list[ConditionResult], side: str) -> ConditionResult | None:
    lines = {c.condition: c for c in _side(conditions, side)}
    label = choose({name: (train_score(c), c.mean_prompt_tokens, c.accuracy) for name, c in lines.items()})
    return lines.get(label) if label else None


def _chosen_how(result: ConditionResult, lines: list[ConditionResult]) -> str:
    if _on_train(lines):
        chosen = result.extra["selection"]
        left_out = [c.condition for c in lines if "selection" not in c.extra]
        unscored = (f"; not candidates: {', '.join(left_out)} (no score on --train: a fine-tune needs a validation "
                    "split, val-split=F)") if left_out else ""
        return f"; chosen before --eval was read: {chosen['accuracy']:.3f} by {chosen['how']}{unscored}"
    return "" if len(lines) == 1 else "; chosen on --eval (no line of this side has a score on --train)"


def _described(side: str, result: ConditionResult, lines: list[ConditionResult] | None = None) -> str:
    low, high = result.interval
    spec = result.spec.replace("\n", "\\n")  # a template's newline, written as the cell writes it
    return (f"Best {side}: {result.condition} ({spec}), accuracy {result.accuracy:.3f} "
            f"(95% CI {low:.3f}-{high:.3f}, n={result.n}){_chosen_how(result, lines or [result])}.")


def _consistency(prompt: ConditionResult, finetune: ConditionResult, draws: dict[str, tuple[int, float]]) -> str:
    def one(result: ConditionResult) -> str:
        parts = []
        if result.consistency is not None:
            parts.append(f"agreement across samples {result.consistency:.3f}")
        valid = result.extra.get("metric_scores", {}).get("valid_rate")
        if valid is not None and "format" in result.extra:  # the format consistency a structured answer needs
            parts.append(f"valid JSON in {np.mean(valid):.1%} of outputs")
        if result.order_accuracies:
            parts.append(f"accuracy spread across demonstration orders {np.std(result.order_accuracies):.3f}")
        if result.condition in draws:
            count, spread = draws[result.condition]
            parts.append(f"accuracy spread across {count} draws of the training data {spread:.3f}")
        return ", ".join(parts) or "not measured (--samples N, or --orders N for a few-shot prompt)"

    return f"Consistency: {prompt.condition}: {one(prompt)}; {finetune.condition}: {one(finetune)}."


def break_even(prompt: ConditionResult, finetune: ConditionResult) -> tuple[str, float | None]:
    """How many queries until the fine-tune's training time is paid back by its cheaper queries on this machine."""
    tokens_saved = prompt.mean_prompt_tokens - finetune.mean_prompt_tokens
    seconds_saved = (prompt.latency_ms - finetune.latency_ms) / 1000
    saved = f"{finetune.condition} reads {tokens_saved:.0f} fewer prompt tokens per query"
    if tokens_saved < 0:
        saved = f"{finetune.condition} reads {-tokens_saved:.0f} more prompt tokens per query"
    if prompt.tokens_generated is not None and finetune.tokens_generated is not None:  # a generation task
        fewer = prompt.tokens_generated - finetune.tokens_generated
        saved += (f" and writes {abs(fewer):.1f} {'fewer' if fewer >= 0 else 'more'} tokens per answer "
                  f"({finetune.tokens_generated:.1f} against {prompt.tokens_generated:.1f})")
    if not finetune.train_seconds:
        return f"Break-even: {saved}; its training time is not known (an adapter loaded from disk).", None
    if seconds_saved <= 0:
        return (f"Break-even: never on this machine: {saved}, and its queries are not faster "
                f"({finetune.latency_ms:.1f} ms against {prompt.latency_ms:.1f} ms), so its "
                f"{finetune.train_seconds:.0f} s of training is not paid back."), None
    queries = finetune.train_seconds / seconds_saved
    return (f"Break-even: {saved} and answers {1000 * seconds_saved:.1f} ms faster "
            f"({finetune.latency_ms:.1f} against {prompt.latency_ms:.1f} ms per query); its "
            f"{finetune.train_seconds:.0f} s of training is paid back after {queries:,.0f} queries on this "
            "machine."), queries


def _recommendation(prompt: ConditionResult, finetune: ConditionResult, gap: float, p: float) -> str:
    if p >= ALPHA:
        return (f"Recommendation: no significant difference (p = {p:.3g} >= {ALPHA}); prefer the prompt, which "
                "needs no training and no adapter to serve, unless its cost per query decides otherwise.")
    winner, loser = (finetune, prompt) if gap > 0 else (prompt, finetune)
    return (f"Recommendation: {winner.condition} (the {'fine-tune' if winner is finetune else 'prompt'}), "
            f"significantly more accurate than {loser.condition} by {abs(gap) * 100:.1f} points (p = {p:.3g}).")


def flexibility_sentence(finetune: ConditionResult, flexibility: dict[str, dict] | None) -> tuple[str | None, dict]:
    """What the best fine-tune costs on each other task: its accuracy there against the base model's, paired."""
    if not flexibility:
        return None, {}
    parts, numbers = [], {}
    for name, task in flexibility.items():
        own = finetune.extra.get("also", {}).get(name)
        if own is None:
            continue
        base = task["base"]
        change = float(np.mean(own) - np.mean(base))
        p = mcnemar_p([s >= 0.5 for s in own], [s >= 0.5 for s in base])
        numbers[name] = {"change": change, "p": p}
        parts.append(f"{change * 100:+.1f} points on {name} against the base model with the same prompt "
                     f"(n={len(base)}, McNemar p = {p:.3g})")
    if not parts:
        return None, {}
    return (f"Flexibility: {finetune.condition}: {'; '.join(parts)}; a prompt leaves the model unchanged, so the "
            "prompting side keeps the base's scores there."), {"flexibility": numbers}


def verdict(conditions: list[ConditionResult], crossover: str | None = None,
            draws: dict[str, tuple[int, float]] | None = None, flexibility: dict[str, dict] | None = None) -> Verdict:
    """The sentences for a comparison's conditions; ``crossover`` is the learning curve's sentence when one ran,
    ``draws`` its repeats at the largest size: condition -> (draws, standard deviation of their accuracies)."""
    prompt, finetune = _best(conditions, PROMPT_SIDE), _best(conditions, FINETUNE_SIDE)
    if prompt is None or finetune is None:
        missing = "prompting condition" if prompt is None else "fine-tune (adapter NAME, or finetune METHOD ...)"
        return Verdict([f"No verdict: the comparison has no {missing} that ran to the end; a verdict needs both "
                        "sides."])
    gap = finetune.accuracy - prompt.accuracy
    (low, high), method = paired_gap_interval(finetune, prompt)
    p, test = paired_test(finetune.scores, prompt.scores)
    resolved, power_numbers = resolution(prompt, finetune, gap, p)
    flexible, flexibility_numbers = flexibility_sentence(finetune, flexibility)
    even, queries = break_even(prompt, finetune)
    lines = {side: _side(conditions, side) for side in (PROMPT_SIDE, FINETUNE_SIDE)}
    sentences = [_described("prompt", prompt, lines[PROMPT_SIDE]), _described("fine-tune", finetune,
                                                                             lines[FINETUNE_SIDE]),
                 f"Gap: the fine-tune's accuracy minus the prompt's is {gap:+.3f} (95% CI {low:+.3f} to {high:+.3f}, "
                 f"{method}); {test} on the same {finetune.n} examples: p = {p:.3g}"
                 f" ({'significant' if p < ALPHA else 'not significant'} at {ALPHA}).",
                 _consistency(prompt, finetune, draws or {}),
                 crossover or "Crossover: not measured (%%compare --train VAR --sizes ... runs the learning curve).",
                 resolved, *([flexible] if flexible else []), even, _recommendation(prompt, finetune, gap, p)]
    numbers = {"prompt": prompt.condition, "finetune": finetune.condition, "gap": gap, "gap_low": low,
               "gap_high": high, "p": p, "break_even_queries": queries, **power_numbers,
               "chosen_on_train": {"prompt": _on_train(lines[PROMPT_SIDE]),
                                   "finetune": _on_train(lines[FINETUNE_SIDE])},
               **flexibility_numbers}
    return Verdict(sentences, numbers)
