r"""``%%compare`` bodies, their runs, and the comparison they produce.

    zero:  prompt   Review: {text}\nSentiment:
    cot:   cot      Review: {text}\nThink step by step, then answer positive or negative.
    fs4:   fewshot  fs4 k=8 calibrate=true
    lora:  finetune lora epochs=3 Review: {text}\nSentiment: {label}

``\n`` in a spec is a newline (``\\n`` a literal backslash-n); blank lines and lines starting with
``#`` are skipped. ``fewshot NAME`` and ``finetune METHOD`` take ``key=value`` options (``%%fewshot``'s and
``%%finetune``'s, ``-`` or ``_``; a value with spaces in quotes); ``finetune`` trains on ``--train`` (at each
size of a learning curve, see :mod:`.learning_curve`). Each kind maps to one runner, so a new kind is one entry
in ``RUNNERS``.
Prompting conditions always run on the base model and ``adapter NAME`` on that adapter, whatever
``%ftpe use`` made active, so the table compares what it says it compares.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..adapters.registry import Adapter, AdapterRegistry
from ..data.examples import Examples
from ..errors import FtpeError, closest_names, did_you_mean
from ..finetune.options import FinetuneOptions
from ..model.memory import PeakMemory
from ..options import FewShotOptions, option_fields, options_from_pairs
from ..persistence.records import adapter_fingerprint, data_fingerprint, namespace_values
from ..persistence.result_cache import ConditionCache, fewshot_identity
from ..prompting.fewshot import FewShotConfig
from ..prompting.templates import ExampleTemplate, unescape_newlines
from .evaluator import ConditionResult, Evaluator
from .stats import mcnemar_p
from .verdict import Verdict, verdict

_LINE = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*:\s*([A-Za-z_-]+)\s*(.*?)\s*$")
_KEY = re.compile(r"\s*([A-Za-z][A-Za-z0-9_-]*)=")
_WORD = re.compile(r"\s*(\S+)(?:\s+|$)")


@dataclass(frozen=True)
class ConditionSpec:
    label: str
    kind: str
    spec: str  # the template, or the name of a few-shot configuration or adapter
    pairs: tuple[tuple[str, str], ...] = ()  # key=value options of a fewshot or finetune line
    method: str = ""  # of a finetune line


@dataclass
class ConditionContext:
    """What a condition may refer to: the session's adapters and named few-shot configurations and, for the
    conditions that learn from data, the training pool and how to search and train on it."""

    adapters: AdapterRegistry
    fewshot_configs: Mapping[str, FewShotConfig]
    train_pool: Examples | None = None  # --train (a learning curve's draw of n at each size)
    seed_offset: int = 0  # a learning curve's repeat: every seed moved by it
    search_fewshot: Callable[[FewShotConfig, FewShotOptions], tuple[FewShotConfig, list]] | None = None
    train: Callable[[str, ExampleTemplate, Examples, FinetuneOptions], Adapter] | None = None


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


def fewshot_setup(context: ConditionContext, spec: ConditionSpec) -> tuple[FewShotConfig, FewShotOptions]:
    """The named configuration with the line's options on it, drawing from the training pool when there is one."""
    config = context.fewshot_configs[spec.spec.strip()]
    options = options_from_pairs(FewShotOptions, spec.pairs, spec.label, k=config.k, select=config.select,
                                 orders=config.orders, allow_overlap=config.allow_overlap, calibrate=config.calibrate)
    config = dataclasses.replace(config, k=options.k, select=options.select, orders=options.orders,
                                 allow_overlap=options.allow_overlap, calibrate=options.calibrate,
                                 seed=config.seed + context.seed_offset,
                                 train=context.train_pool if context.train_pool is not None else config.train)
    return config, options


def _run_fewshot(context: ConditionContext, evaluator: Evaluator, spec: ConditionSpec) -> ConditionResult:
    config, options = fewshot_setup(context, spec)
    search_log = None
    if options.search:
        config, search_log = context.search_fewshot(config, options)
    with context.adapters.using("base"):
        result = evaluator.fewshot(spec.label, config)
    if search_log:
        result.extra["search"] = {"candidates": len(search_log), "best": _kept(search_log)}
    return result


def _kept(log: list[dict]) -> dict:
    """The chosen row of a search log, without its per-evaluation trace (a search summary for the result)."""
    return {key: value for key, value in next(row for row in log if row["best"]).items() if key != "evaluations"}


def finetune_setup(context: ConditionContext, spec: ConditionSpec) -> FinetuneOptions:
    options = options_from_pairs(FinetuneOptions, spec.pairs, spec.label, method=spec.method)
    return dataclasses.replace(options, seed=options.seed + context.seed_offset)


def _run_finetune(context: ConditionContext, evaluator: Evaluator, spec: ConditionSpec) -> ConditionResult:
    """Train on the pool, score the adapter, forget it: a curve trains one per size, kept as a result, not weights."""
    options = finetune_setup(context, spec)
    adapter = context.train(f"{spec.label} (n={len(context.train_pool)})", ExampleTemplate.from_body(spec.spec),
                            context.train_pool, options)
    context.adapters.add(adapter)
    try:
        with context.adapters.using(adapter.name):
            result = evaluator.adapter(spec.label, adapter)
    finally:
        context.adapters.delete(adapter.name)
    result.kind, result.spec = "finetune", f"{spec.method} on {len(context.train_pool)} examples"
    if adapter.search_log:
        result.extra["search"] = {"trials": len(adapter.search_log), "best": _kept(adapter.search_log)}
    return result


RUNNERS: dict[str, Callable[[ConditionContext, Evaluator, ConditionSpec], ConditionResult]] = {
    "prompt": _run_prompt, "cot": _run_cot, "fewshot": _run_fewshot, "adapter": _run_adapter, "base": _run_base,
    "finetune": _run_finetune}
NEEDS_SPEC = {"prompt", "cot", "fewshot", "adapter", "finetune"}
LEARNS_FROM_TRAIN = {"fewshot", "finetune"}  # a learning curve reruns these at every size; the others are flat


def _pairs(text: str, where: str) -> tuple[tuple[tuple[str, str], ...], str]:
    """Leading ``key=value`` options of a line (a value with spaces in matching quotes), and the text after them;
    a value that opens a quote it never closes is an error, never a value with a character cut off."""
    pairs = []
    while match := _KEY.match(text):
        key, rest = match.group(1), text[match.end():]
        if rest[:1] in ("'", '"'):
            end = rest.find(rest[0], 1)
            if end < 0:
                raise FtpeError(f"{where}: {key}={rest.split()[0] if rest.split() else rest} opens a quote that is "
                                f"never closed; write {key}={rest[0]}...{rest[0]}.")
            value, rest = rest[1:end], rest[end + 1:]
            if rest[:1].strip():
                raise FtpeError(f"{where}: {key}= has text right after its closing quote; put a space after it.")
        else:
            value = rest.split(None, 1)[0] if rest.strip() and not rest[0].isspace() else ""
            rest = rest[len(value):]
        pairs.append((key, value))
        text = rest.lstrip()
    return tuple(pairs), text


def _no_options_in_template(template: str, options_class: type, where: str) -> None:
    """A ``key=value`` naming an option (or nearly) after the template began would be read as template text."""
    names = [item.name for item in option_fields(options_class)]
    for token in template.split():
        match = _KEY.match(token)
        if match and token[match.end():]:
            name = match.group(1).replace("-", "_")
            if name in names or closest_names(name, names):
                raise FtpeError(f"{where}: {token} stands inside the template; put key=value options before the "
                                "template (finetune METHOD key=value ... TEMPLATE).")


def _learning_line(number: int, label: str, kind: str, raw: str) -> ConditionSpec:
    """``fewshot NAME key=value ...`` or ``finetune METHOD key=value ... TEMPLATE``; options checked now, so a bad
    one fails before any condition runs."""
    word = _WORD.match(raw)
    head, rest = word.group(1), raw[word.end():]
    where = f"Line {number} ({label})"
    pairs, template = _pairs(rest, where)
    if kind == "fewshot":
        if template.strip():
            raise FtpeError(f"{where}: after 'fewshot {head}' come key=value options only, not {template.strip()!r}.")
        options_from_pairs(FewShotOptions, pairs, where)
        return ConditionSpec(label, kind, head, pairs)
    options_from_pairs(FinetuneOptions, pairs, where, method=head.lower())
    _no_options_in_template(template, FinetuneOptions, where)
    template = unescape_newlines(template)
    if "{label}" not in template:
        raise FtpeError(f"{where}: a finetune line ends with its training template, with {{label}} where the answer "
                        r"goes: lora: finetune lora epochs=3 Review: {text}\nSentiment: {label}")
    return ConditionSpec(label, kind, template, pairs, head.lower())


def _parse_line(number: int, line: str) -> ConditionSpec:
    match = _LINE.match(line)
    if not match:
        raise FtpeError(f"Line {number} of %%compare is not 'LABEL: KIND SPEC': {line.strip()!r}. "
                        r"Example: zero: prompt Review: {text}\nSentiment:")
    label, kind, raw = match.group(1), match.group(2).lower(), match.group(3)
    if kind not in RUNNERS:
        raise FtpeError(f"Line {number}: unknown kind {kind!r}.{did_you_mean(kind, RUNNERS)} "
                        f"Kinds: {', '.join(RUNNERS)}.")
    if kind in NEEDS_SPEC and not raw:
        raise FtpeError(f"Line {number}: {kind} needs a spec after the kind (a template or a name).")
    if kind in LEARNS_FROM_TRAIN:
        return _learning_line(number, label, kind, raw)
    return ConditionSpec(label, kind, unescape_newlines(raw))


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
        if spec.kind == "finetune" and context.train_pool is None:
            raise FtpeError(f"{spec.label}: a finetune condition trains on --train; add --train VAR (and --sizes "
                            "16,64,256 for a learning curve).")


def _with_namespace(identity: dict, evaluator: Evaluator, templates: list[str]) -> dict:
    columns = set(evaluator.eval_data.rows[0]) if evaluator.eval_data.rows else set()
    return {**identity, "namespace": namespace_values(templates, evaluator.namespace, columns)}


def fewshot_condition_identity(evaluator: Evaluator, config: FewShotConfig, k: int | None = None) -> dict:
    template = config.template
    return _with_namespace({"kind": "fewshot", "fewshot": fewshot_identity(config, k)}, evaluator,
                           [template.template, template.instructions])


def _search_identity(evaluator: Evaluator, options: FewShotOptions) -> dict:
    lists = {option: evaluator.namespace.get(value) if isinstance(value, str) else value
             for option, value in (("instructions", options.instructions), ("verbalizers", options.verbalizers))}
    return {"search": options.search, "search_k": options.search_k, "val_split": options.val_split,
            **{option: repr(value) for option, value in lists.items() if value is not None}}


def condition_identity(context: ConditionContext, evaluator: Evaluator, spec: ConditionSpec) -> dict | None:
    """What a condition's numbers depend on beyond the eval set and settings: its template, few-shot
    configuration, training data and options, or adapter weights, and the notebook variables its template fills
    (for the result cache)."""
    name = spec.spec.strip()
    if spec.kind == "fewshot":
        config, options = fewshot_setup(context, spec)
        identity = fewshot_condition_identity(evaluator, config)
        return {**identity, **({"search": _search_identity(evaluator, options)} if options.search else {})}
    if spec.kind == "finetune":
        options = dataclasses.asdict(finetune_setup(context, spec))
        return _with_namespace({"kind": "finetune", "options": options, "template": spec.spec,
                                "train": data_fingerprint(context.train_pool)}, evaluator, [spec.spec])
    if spec.kind == "adapter" or (spec.kind == "base" and not spec.spec):
        adapter = context.adapters.require(name) if spec.kind == "adapter" else context.adapters.newest()
        if adapter is None:
            return None
        return _with_namespace({"kind": spec.kind, "adapter": adapter_fingerprint(adapter)}, evaluator,
                               [adapter.template.template] if adapter.template else [])
    return _with_namespace({"kind": spec.kind, "spec": spec.spec}, evaluator, [spec.spec])


def run_condition(context: ConditionContext, evaluator: Evaluator, spec: ConditionSpec,
                  cache: ConditionCache | None) -> ConditionResult:
    """One condition, read from the cache when it ran before; its peak memory and its whole time (a search and
    a training included, which ``seconds`` leaves out) are measured as it runs."""
    def compute() -> ConditionResult:
        started = time.perf_counter()
        with PeakMemory(evaluator.handle.device) as peak:
            result = RUNNERS[spec.kind](context, evaluator, spec)
        result.extra.update(peak_memory=peak.bytes, wall_seconds=time.perf_counter() - started)
        return result

    return cache.run(spec.label, condition_identity(context, evaluator, spec), compute) if cache is not None \
        else compute()


def run_conditions(context: ConditionContext, evaluator: Evaluator, specs: list[ConditionSpec],
                   cache: ConditionCache | None = None) -> tuple[list[ConditionResult], list[str]]:
    """Every condition in order, and the labels of those the stop button kept from running.

    A condition cut short is kept, marked ``interrupted`` with its partial outputs; nothing after it runs.
    With a ``cache``, a condition that ran before on the same weights, data and settings is read back.
    """
    check_references(context, specs)
    results: list[ConditionResult] = []
    for index, spec in enumerate(specs):
        try:
            results.append(run_condition(context, evaluator, spec, cache))
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
    # %%compare --train: a learning_curve.LearningCurve (every size; ``conditions`` are the largest size's). Not
    # imported here: the curve is built from this module's runners, so the type would make an import cycle.
    curve: Any = None

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
        if result.extra.get("peak_memory"):
            row["peak_memory_mb"] = result.extra["peak_memory"] / 2**20
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
        if self.curve is None:
            return verdict(self.conditions)
        return verdict(self.conditions, self.curve.crossover().sentence, self.curve.draw_spreads())

    def _repr_pretty_(self, printer, cycle: bool) -> None:
        printer.text(str(self))
