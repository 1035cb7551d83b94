"""``%%prompt``: fill a template (once, or per row of ``--over``) and generate, keeping a named run for diffs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..data.examples import as_rows
from ..inference.generation import generate_texts
from ..prompting.prompt_result import PromptResult
from ..prompting.templates import fill
from ..workbench import Workbench


def run_prompt(bench: Workbench, template: str, namespace: Mapping[str, Any] | None = None, over: Any = None,
               name: str | None = None, stream: bool = False, **settings: Any) -> PromptResult:
    """Fill ``template`` (per row of ``over`` if given) and generate; a ``name`` keeps it for re-run diffs."""
    namespace = namespace or {}
    gen_settings = bench.settings(**settings)
    rows = as_rows(over) if over is not None else None
    prompts = ([fill(template, {**namespace, **row}) for row in rows] if rows is not None
               else [fill(template, namespace)])
    bench.require_model()
    run = generate_texts(bench.model, bench.tokenizer, prompts, gen_settings, stream=stream)
    if run.truncated:
        bench.log(f"Cut {run.truncated} prompt(s) on the left to fit the model's context (--truncate).")
    previous = bench.runs.previous(name) or (bench.recorder.previous_prompt(name) if name else None)
    result = PromptResult(template=template, prompts=prompts, outputs=run.outputs, settings=run.settings,
                          model=bench.source.label, seconds=run.seconds, prompt_tokens=run.prompt_tokens,
                          rows=rows, name=name, interrupted=run.interrupted, previous=previous)
    bench.runs.record_prompt(result)
    bench.recorder.record_prompt(result, {**bench.environment(), "adapter": bench.adapters.active})
    return result
