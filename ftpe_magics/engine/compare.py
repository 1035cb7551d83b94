r"""``%%compare`` bodies, their runs, and the comparison they produce.

    zero:  prompt  Review: {text}\nSentiment:
    cot:   cot     Review: {text}\nThink step by step, then answer positive or negative.
    fs4:   fewshot fs4

``\n`` in a spec is a newline (``\\n`` a literal backslash-n); blank lines and lines starting with
``#`` are skipped. Each kind maps to one runner, so a new kind is one entry in ``RUNNERS``.
Prompting conditions always run on the base model and ``adapter NAME`` on that adapter, whatever
``%ftpe use`` made active, so the table compares what it says it compares.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from .adapters import AdapterRegistry
from .errors import FtpeError, did_you_mean
from .evaluation import ConditionResult, Evaluator
from .fewshot import FewShotConfig
from .records import adapter_fingerprint, namespace_values
from .result_cache import ConditionCache, fewshot_identity
from .stats import mcnemar_p
from .templates import unescape_newlines
from .verdict import Verdict, verdict

_LINE = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*:\s*([A-Za-z_-]+)\s*(.*?)\s*$")


@dataclass(frozen=True)
class ConditionSpec:
    label: str
    kind: str
    spec: str


@dataclass
class ConditionContext:
    """What a condition may refer to: the session's adapters and its named few-shot configurations."""

    adapters: AdapterRegistry
    fewshot_configs: Mapping[str, FewShotConfig]


def _run_prompt(context: ConditionContext, evaluator: Evaluator, spec: ConditionSpec) -> ConditionResult:
    with context.adapters.using("base"):
        return evaluator.prompt(spec.label, spec.spec)


def _run_cot(context: ConditionContext, evaluator: Evaluator, spec: ConditionSpec) -> ConditionResult:
    with context.adapters.using("base"):
        return evaluator.cot(spec.label, spec.spec)


def _run_adapter(context: ConditionContext, evaluator: Evaluator, spec: ConditionSpec) -> ConditionResult:
    adapter = context.adapters.require(spec.spec.strip())
    with context.adapters.using(adapter.name):
        return evaluator.adapter(spec.label, adapter)


def _run_base(context: ConditionContext, evaluator: Evaluator, spec: ConditionSpec) -> ConditionResult:
    """The base model alone: on a template if given, else on the newest adapter's training format."""
    with context.adapters.using("base"):
        if spec.spec:
            return evaluator.prompt(spec.label, spec.spec, kind="base")
        newest = context.adapters.newest()
        if newest is None:
            raise FtpeError("'base' without a template scores the base model in an adapter's training format, "
                            "and there is no adapter yet: give a template (base Review: {text}\\nSentiment:).")
        return evaluator.adapter(spec.label, newest, kind="base")


def _run_fewshot(context: ConditionContext, evaluator: Evaluator, spec: ConditionSpec) -> ConditionResult:
    with context.adapters.using("base"):
        return evaluator.fewshot(spec.label, context.fewshot_configs[spec.spec.strip()])


RUNNERS: dict[str, Callable[[ConditionContext, Evaluator, ConditionSpec], ConditionResult]] = {
    "prompt": _run_prompt, "cot": _run_cot, "fewshot": _run_fewshot, "adapter": _run_adapter, "base": _run_base}
NEEDS_SPEC = {"prompt", "cot", "fewshot", "adapter"}


def _parse_line(number: int, line: str) -> ConditionSpec:
    match = _LINE.match(line)
    if not match:
        raise FtpeError(f"Line {number} of %%compare is not 'LABEL: KIND SPEC': {line.strip()!r}. "
                        r"Example: zero: prompt Review: {text}\nSentiment:")
    label, kind, spec = match.group(1), match.group(2).lower(), unescape_newlines(match.group(3))
    if kind not in RUNNERS:
        raise FtpeError(f"Line {number}: unknown kind {kind!r}.{did_you_mean(kind, RUNNERS)} "
                        f"Kinds: {', '.join(RUNNERS)}.")
    if kind in NEEDS_SPEC and not spec:
        raise FtpeError(f"Line {number}: {kind} needs a spec after the kind (a template or a name).")
    return ConditionSpec(label, kind, spec)


def parse_conditions(body: str) -> list[ConditionSpec]:
    specs: list[ConditionSpec] = []
    for number, line in enumerate(body.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        spec = _parse_line(number, line)
        if any(existing.label == spec.label for existing in specs):
            raise FtpeError(f"Line {number}: the label {spec.label!r} is used twice; give each condition its own.")
        specs.append(spec)
    if not specs:
        raise FtpeError("%%compare has no conditions: write one per line, LABEL: KIND SPEC.")
    return specs


def check_references(context: ConditionContext, specs: list[ConditionSpec]) -> None:
    """Fail on a missing few-shot configuration or adapter before any condition runs (no work is thrown away)."""
    for spec in specs:
        name = spec.spec.strip()
        if spec.kind == "fewshot" and name not in context.fewshot_configs:
            known = list(context.fewshot_configs)
            raise FtpeError(f"{spec.label}: no few-shot configuration named {name!r}.{did_you_mean(name, known)} "
                            "Run %%fewshot --name NAME first" + (f" (known: {', '.join(known)})." if known else "."))
        if spec.kind == "adapter":
            context.adapters.require(name)


def _with_namespace(identity: dict, evaluator: Evaluator, templates: list[str]) -> dict:
    columns = set(evaluator.eval_data.rows[0]) if evaluator.eval_data.rows else set()
    return {**identity, "namespace": namespace_values(templates, evaluator.namespace, columns)}


def fewshot_condition_identity(evaluator: Evaluator, config: FewShotConfig, k: int | None = None) -> dict:
    template = config.template
    return _with_namespace({"kind": "fewshot", "fewshot": fewshot_identity(config, k)}, evaluator,
                           [template.template, template.instructions])


def condition_identity(context: ConditionContext, evaluator: Evaluator, spec: ConditionSpec) -> dict | None:
    """What a condition's numbers depend on beyond the eval set and settings: its template, few-shot
    configuration or adapter weights, and the notebook variables its template fills (for the result cache)."""
    name = spec.spec.strip()
    if spec.kind == "fewshot":
        return fewshot_condition_identity(evaluator, context.fewshot_configs[name])
    if spec.kind == "adapter" or (spec.kind == "base" and not spec.spec):
        adapter = context.adapters.require(name) if spec.kind == "adapter" else context.adapters.newest()
        if adapter is None:
            return None
        return _with_namespace({"kind": spec.kind, "adapter": adapter_fingerprint(adapter)}, evaluator,
                               [adapter.template.template] if adapter.template else [])
    return _with_namespace({"kind": spec.kind, "spec": spec.spec}, evaluator, [spec.spec])


def run_conditions(context: ConditionContext, evaluator: Evaluator, specs: list[ConditionSpec],
                   cache: ConditionCache | None = None) -> tuple[list[ConditionResult], list[str]]:
    """Every condition in order, and the labels of those the stop button kept from running.

    A condition cut short is kept, marked ``interrupted`` with its partial outputs; nothing after it runs.
    With a ``cache``, a condition that ran before on the same weights, data and settings is read back.
    """
    check_references(context, specs)
    results: list[ConditionResult] = []
    for index, spec in enumerate(specs):
        def compute(spec: ConditionSpec = spec) -> ConditionResult:
            return RUNNERS[spec.kind](context, evaluator, spec)

        try:
            results.append(cache.run(spec.label, condition_identity(context, evaluator, spec), compute)
                           if cache is not None else compute())
        except KeyboardInterrupt:  # stopped outside a forward pass (tokenising, selecting demonstrations)
            return results, [s.label for s in specs[index:]]
        if results[-1].interrupted:
            return results, [s.label for s in specs[index + 1:]]
    return results, []


@dataclass
class CompareResult:
    """Conditions scored on the same examples: the table, per-example predictions, and the tests between them."""

    conditions: list[ConditionResult]
    eval_texts: list[str]
    title: str = "compare"
    search_log: list[dict] | None = None  # %%fewshot --search: every candidate and its validation accuracy
    model_params: int = 0  # of the base model: FLOPs per query and of training are counted from it

    def __post_init__(self) -> None:
        if not self.conditions:
            raise ValueError("a comparison needs at least one condition")

    @property
    def best(self) -> ConditionResult:
        """The most accurate condition that ran to the end (an interrupted one is not scored)."""
        finished = [c for c in self.conditions if not c.interrupted] or self.conditions
        return max(finished, key=lambda c: c.accuracy)

    def _row(self, result: ConditionResult, best: ConditionResult) -> dict:
        low, high = result.interval
        row = {"condition": result.condition, "kind": result.kind, "accuracy": result.accuracy,
               "accuracy_low": low, "accuracy_high": high, "macro_f1": result.macro_f1,
               "consistency": result.consistency, "latency_ms": result.latency_ms,
               "prompt_tokens": result.mean_prompt_tokens, "trainable_params": result.trainable_params,
               "train_seconds": result.train_seconds,
               "p_vs_best": None if result is best or result.interrupted or best.interrupted
               else mcnemar_p(result.correct, best.correct), "n": result.n, "interrupted": result.interrupted}
        if self.model_params:  # the usual estimates: 2 FLOPs per parameter per token read, 6 per token trained on
            row["flops_per_query"] = 2.0 * self.model_params * result.mean_prompt_tokens
            tokens = result.extra.get("train_tokens")
            row["train_flops"] = 6.0 * self.model_params * tokens if tokens else None
        if result.order_accuracies:
            row["order_spread"] = float(np.std(result.order_accuracies))
        return row

    def to_pandas(self):
        import pandas as pd

        best = self.best
        return pd.DataFrame([self._row(result, best) for result in self.conditions])

    def examples(self):
        """Per-example predictions of every condition (and whether each is right)."""
        import pandas as pd

        frame = pd.DataFrame({"text": self.eval_texts, "reference": self.conditions[0].references})
        for result in self.conditions:
            frame[result.condition] = result.predictions
            frame[f"{result.condition}_correct"] = result.correct
        return frame

    def disagreements(self) -> list[int]:
        """Indices of the examples on which the conditions do not all predict the same."""
        return [index for index in range(len(self.eval_texts))
                if len({c.predictions[index] for c in self.conditions}) > 1]

    def __str__(self) -> str:
        columns = ["condition", "accuracy", "accuracy_low", "accuracy_high", "macro_f1", "latency_ms", "prompt_tokens",
                   "p_vs_best", "n"]
        return self.to_pandas()[columns].to_string(index=False, float_format=lambda v: f"{v:.3f}")

    def verdict(self) -> Verdict:
        """Prompt or fine-tune: the best of each side, the gap and its significance, consistency, the break-even
        point and a recommendation, in sentences whose numbers are this table's (see :mod:`.verdict`)."""
        return verdict(self.conditions)

    def _repr_pretty_(self, printer, cycle: bool) -> None:
        printer.text(str(self))
