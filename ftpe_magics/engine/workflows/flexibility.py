"""``%%compare --also NAME=VAR``: what a fine-tune costs on other tasks (the seeds' flexibility axis).

A prompt leaves the model as it is; a fine-tune changes it for every task it is later asked. Each other task
is a labelled set and the template it is asked with; the base model is scored on it once, and every fine-tune
of the comparison while it is active, on the same examples with the same template, so the change is paired.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..adapters.registry import Adapter
from ..errors import FtpeError
from ..evaluation.evaluator import Evaluator
from ..evaluation.identity import data_fingerprint
from ..options import EvalOptions
from ..prompting.templates import template_fields
from ..workbench import Workbench


def _task(name: str, value: Any) -> tuple[Any, str]:
    """(data, template) from ``{'data': ..., 'template': ...}`` or a ``(data, template)`` pair."""
    if isinstance(value, Mapping) and {"data", "template"} <= set(value):
        data, template = value["data"], value["template"]
    elif isinstance(value, (tuple, list)) and len(value) == 2 and isinstance(value[1], str):
        data, template = value
    else:
        raise FtpeError(f"--also {name}: the variable must hold {{'data': rows, 'template': 'Request: {{text}}\\n"
                        "Intent: {label}'} (or a (rows, template) pair).")
    if not isinstance(template, str) or "text" not in template_fields(template):
        raise FtpeError(f"--also {name}: the template must fill {{text}} from the rows, e.g. Request: {{text}}\\n"
                        "Intent: {label}.")
    return data, template


def other_tasks(bench: Workbench, also: str, namespace: Mapping[str, Any] | None,
                evaluation: EvalOptions) -> dict[str, tuple[Evaluator, str]]:
    """Each ``NAME=VAR`` of ``--also`` as an evaluator on that task's rows and the template it is asked with."""
    tasks = {}
    for item in (part.strip() for part in also.split(",") if part.strip()):
        name, _, variable = item.partition("=")
        if not name or not variable:
            raise FtpeError(f"--also takes NAME=VAR[,NAME=VAR], e.g. --also snips=snips_task; got {item!r}.")
        if variable not in (namespace or {}):
            raise FtpeError(f"--also {name}: no variable named {variable!r} in the notebook. Define it first.")
        data, template = _task(name, namespace[variable])
        rows = bench.examples(data, f"--also {name}")
        tasks[name] = (bench.evaluator(rows, EvalOptions(seed=evaluation.seed, batch_size=evaluation.batch_size),
                                       namespace), template)
    return tasks


def flexibility_scorer(bench: Workbench, tasks: dict[str, tuple[Evaluator, str]]
                       ) -> Callable[[Adapter | None], dict[str, list[float]]]:
    """Scores on every other task with ``adapter`` active (None: the base model)."""
    def score(adapter: Adapter | None) -> dict[str, list[float]]:
        with bench.adapters.using(adapter.name if adapter is not None else "base"):
            return {name: evaluator.prompt(name, template).scores for name, (evaluator, template) in tasks.items()}

    return score


def tasks_identity(tasks: dict[str, tuple[Evaluator, str]]) -> dict:
    return {name: {"data": data_fingerprint(evaluator.eval_data), "template": template}
            for name, (evaluator, template) in tasks.items()}
