"""Two conditions of a comparison, judged against each other by the base model, in both orders."""

from __future__ import annotations

from ..errors import FtpeError
from ..evaluation.comparison import CompareResult
from ..evaluation.judge import PAIRWISE_TEMPLATE, pairwise
from ..prompting.templates import template_fields
from ..workbench import Workbench


def judge_pairwise(bench: Workbench, result: CompareResult, first: str, second: str,
                   template: str | None = None) -> dict:
    """How often the judge prefers ``first``'s output to ``second``'s on the same rows, counting a preference only
    when it holds with the answers in both positions; a template has ``{first}``, ``{second}`` and
    ``{reference}`` and asks for 1 or 2."""
    by_name = {condition.condition: condition for condition in result.conditions}
    missing = [name for name in (first, second) if name not in by_name]
    if missing:
        raise FtpeError(f"No condition named {missing[0]!r} in this comparison: use one of {', '.join(by_name)}.")
    a, b = by_name[first], by_name[second]
    if a.label_set or b.label_set:
        raise FtpeError("Pairwise judging compares generated answers; these conditions scored labels (compare "
                        "their accuracy instead).")
    template = template or PAIRWISE_TEMPLATE
    if not {"first", "second"} <= set(template_fields(template)):
        raise FtpeError("A pairwise judge template needs {first} and {second} (and usually {reference}).")
    bench.require_model()
    with bench.adapters.using("base"):
        counts = pairwise(bench.model, bench.tokenizer, a.predictions, b.predictions, a.references,
                          bench.config.batch_size, template)
    return {first: counts["first"], second: counts["second"], "same_output": counts["same_output"],
            "position_biased": counts["position_biased"], "n": counts["n"]}
