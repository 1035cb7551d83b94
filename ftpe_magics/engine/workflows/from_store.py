"""A comparison the run store answers whole, in a kernel that has loaded no model.

A cache key names a result by the weights' fingerprints, the data and the settings, never by the weights
themselves; the store keeps what each load produced under the signature of its files (``model.signature``) and each
adapter's fingerprint in its description. So a ``%%compare`` whose every condition ran before (prompts, ``base``
templates, ``adapter`` lines) is read back with no model loaded, no adapter read and peft not imported. One
condition that is not in the store, or any line that learns from ``--train``, and the model is loaded as always.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..adapters.registry import AdapterRegistry
from ..data.examples import Examples
from ..errors import FtpeError
from ..evaluation.condition_kinds import KINDS, ConditionContext, ConditionSpec, check_references, condition_identity
from ..evaluation.evaluator import Evaluator
from ..options import CompareOptions, EvalOptions
from ..workbench import Workbench


@dataclass
class StoredAnswer:
    """What a comparison answered from the store runs with: the evaluator (never scores), the context and the
    environment and parameter count of the load that computed the results."""

    evaluator: Evaluator
    context: ConditionContext
    environment: dict
    parameters: int


def stored_answer(bench: Workbench, specs: list[ConditionSpec], eval_data: Examples, evaluation: EvalOptions,
                  compare: CompareOptions, namespace: Mapping[str, Any] | None) -> StoredAnswer | None:
    """The comparison's setting without a model, when every condition of it is in the store; None otherwise."""
    if bench.loaded or evaluation.no_cache or compare.also or any(KINDS[s.kind].learns_from_train for s in specs):
        return None
    load = bench.stored_load()
    if load is None:
        return None
    fingerprint = load["environment"]["model_fingerprint"]
    adapters = AdapterRegistry(bench.loaded_model,
                               describer=lambda name: bench.recorder.stored_reference(name, fingerprint))
    context = ConditionContext(adapters, bench.runs.fewshot_configs)
    evaluator = bench.evaluator(eval_data, evaluation, namespace, compare, load=False)
    cache = bench.recorder.condition_cache(evaluator, load["environment"], use=True)
    try:
        check_references(context, specs)
        keys = [cache.key(condition_identity(context, evaluator, spec)) for spec in specs]
    except FtpeError:  # a line the store cannot answer: the model is loaded and the line says what is wrong
        return None
    if not all(key and cache.store.cached(key) for key in keys):
        return None
    return StoredAnswer(evaluator, context, load["environment"], load["parameters"])
