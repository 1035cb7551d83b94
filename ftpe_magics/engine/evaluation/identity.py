"""What a result's numbers depend on: the keys of the result cache and the fingerprints stored with runs.

A condition's key is a digest of its weights (the base's fingerprint and the adapter's), the eval data,
the scoring settings (norm, samples, seed, metric and its code, batch size, token limits), the condition
itself (template, few-shot configuration with a fingerprint of its pool) and the values of any notebook
variable its template fills. Every condition kind builds its key from these (see :mod:`.condition_kinds`);
the store (``persistence``) and the worker jobs read them, so they live below both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..adapters.fingerprint import adapter_fingerprint
from ..data.examples import Examples
from ..digests import digest
from ..prompting.fewshot import FewShotConfig
from ..prompting.templates import template_fields

__all__ = ["adapter_fingerprint", "data_fingerprint", "digest", "evaluator_identity", "fewshot_identity"]

if TYPE_CHECKING:
    from .evaluator import Evaluator


def data_fingerprint(data: Examples | None) -> str | None:
    """Every row (inputs, any column a template may use) and the label words as scored."""
    if data is None:
        return None
    return digest({"rows": data.rows, "labels": data.labels, "label_set": data.label_set, "input": data.input_col})


def namespace_values(templates: list[str], namespace: Mapping[str, Any], columns: set[str]) -> dict[str, str]:
    """Notebook variables a template fills (fields that are not data columns): their values change results."""
    names = {name for text in templates for name in template_fields(text)} - columns - {"label"}
    return {name: repr(namespace[name])[:20000] for name in sorted(names) if name in namespace}


def code_digest(function: Any) -> str:
    """A notebook metric function by its code, so editing it is a new key."""
    code = getattr(function, "__code__", None)
    if code is None:
        return repr(function)
    return digest([code.co_code.hex(), repr(code.co_consts), code.co_names])


def evaluator_identity(evaluator: Evaluator) -> dict:
    metric = None
    if evaluator.metric is not None:
        name, function = evaluator.metric
        metric = {"name": name, "code": code_digest(function)}
    return {"eval": data_fingerprint(evaluator.eval_data), "norm": evaluator.norm, "samples": evaluator.samples,
            "seed": evaluator.seed, "metric": metric, "answer_regex": evaluator.answer_regex,
            "max_new_tokens": evaluator.max_new_tokens, "default_max_new_tokens": evaluator.defaults.max_new_tokens,
            "batch_size": evaluator.batch_size,
            **({"judge": evaluator.judge.identity()} if evaluator.judge is not None else {})}


def fewshot_identity(config: FewShotConfig, k: int | None = None) -> dict:
    template = config.template
    return {"template": template.template, "instructions": template.instructions,
            "train": data_fingerprint(config.train),
            "k": config.k if k is None else k, "select": config.select, "seed": config.seed, "orders": config.orders,
            "allow_overlap": config.allow_overlap, **({"calibrate": True} if config.calibrate else {}),
            **({"verbalizer": config.verbalizer} if config.verbalizer else {})}


def with_namespace(identity: dict, evaluator: Evaluator, templates: list[str]) -> dict:
    """A condition's identity with the values of the notebook variables its templates fill."""
    columns = set(evaluator.eval_data.rows[0]) if evaluator.eval_data.rows else set()
    return {**identity, "namespace": namespace_values(templates, evaluator.namespace, columns)}


def fewshot_condition_identity(evaluator: Evaluator, config: FewShotConfig, k: int | None = None) -> dict:
    template = config.template
    return with_namespace({"kind": "fewshot", "fewshot": fewshot_identity(config, k)}, evaluator,
                          [template.template, template.instructions])
