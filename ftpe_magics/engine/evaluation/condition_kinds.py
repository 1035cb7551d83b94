r"""The kinds of a ``%%compare`` condition, one registry entry each.

    zero:  prompt   Review: {text}\nSentiment:
    cot:   cot      Review: {text}\nThink step by step, then answer positive or negative.
    fs4:   fewshot  fs4 k=8 calibrate=true
    lora:  finetune lora epochs=3 Review: {text}\nSentiment: {label}

A :class:`ConditionKind` says everything the comparison, the learning curve, the result cache, the verdict and
the training view need of a kind: how its line is read, how it runs, what its numbers depend on, what it refers
to, whether it learns from ``--train`` and which side of "prompt or fine-tune?" it is on. A new kind is one
:func:`register_kind` call, like a peft tuner in its method registry. ``key=value`` options are parsed once, when
the line is read, into the option object the kind runs with.

Prompting conditions always run on the base model and ``adapter NAME`` on that adapter, whatever ``%ftpe use``
made active, so the table compares what it says it compares.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ..adapters.fingerprint import adapter_fingerprint
from ..adapters.registry import Adapter, AdapterRegistry
from ..data.examples import Examples
from ..errors import FtpeError, did_you_mean
from ..finetune.options import FinetuneOptions
from ..options import FewShotOptions, options_from_pairs
from ..prompting.fewshot import FewShotConfig
from ..prompting.templates import ExampleTemplate, unescape_newlines
from .condition_syntax import LINE, first_word, key_values, no_options_in_template
from .evaluator import ConditionResult, Evaluator
from .identity import data_fingerprint, fewshot_condition_identity, with_namespace

PROMPT_SIDE, FINETUNE_SIDE = "prompt", "finetune"
_FROM_CONFIG = ("k", "select", "orders", "allow_overlap", "calibrate")  # a fewshot line's defaults: its configuration


@dataclass(frozen=True)
class ConditionSpec:
    label: str
    kind: str
    spec: str  # the template, or the name of a few-shot configuration or adapter
    options: Any = None  # a fewshot or finetune line's key=value options, parsed into their option object
    given: tuple[str, ...] = ()  # the option names the line wrote (the others come from the configuration)
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
    # --also: an adapter's (None: the base's) scores on the other tasks, and what those tasks are (for the cache)
    flexibility: Callable[[Adapter | None], dict[str, list[float]]] | None = None
    flexibility_identity: dict | None = None
    # choosing each side's best before --eval is read: an evaluator over the training pool, and a few-shot
    # configuration's cross-validated accuracy on that pool
    select_on: Evaluator | None = None
    cross_validate: Callable[[FewShotConfig], float | None] | None = None


Runner = Callable[[ConditionContext, Evaluator, ConditionSpec], ConditionResult]


def _template_line(where: str, label: str, kind: str, raw: str) -> ConditionSpec:
    return ConditionSpec(label, kind, unescape_newlines(raw))


def _template_identity(context: ConditionContext, evaluator: Evaluator, spec: ConditionSpec) -> dict | None:
    return with_namespace({"kind": spec.kind, "spec": spec.spec}, evaluator, [spec.spec])


def _refers_to_nothing(context: ConditionContext, spec: ConditionSpec) -> None:
    return None


Selection = Callable[[ConditionContext, ConditionSpec, ConditionResult], "dict | None"]


def _not_selectable(context: ConditionContext, spec: ConditionSpec, result: ConditionResult) -> dict | None:
    """No score on --train that is not biased (an adapter trained elsewhere may have seen it)."""
    return None


def _searched(result: ConditionResult) -> dict | None:
    best = result.extra.get("search", {}).get("best") or {}
    value = best.get("val_accuracy")
    return {"accuracy": float(value), "how": "its search's validation on --train"} if value is not None else None


@dataclass(frozen=True)
class ConditionKind:
    """One kind of condition: everything the rest of the engine asks of it."""

    name: str
    run: Runner
    side: str  # PROMPT_SIDE or FINETUNE_SIDE: which best the verdict and the crossover compare it as
    needs_spec: bool = True  # a line of this kind must say something after the kind
    learns_from_train: bool = False  # a learning curve reruns it at every size; the others run once and stay flat
    reference_while_training: bool = False  # the live training view draws its score as a reference line
    parse: Callable[[str, str, str, str], ConditionSpec] = _template_line  # (where, label, kind, rest of line)
    identity: Callable[[ConditionContext, Evaluator, ConditionSpec], dict | None] = _template_identity
    check: Callable[[ConditionContext, ConditionSpec], None] = _refers_to_nothing  # before any condition runs
    selection: Selection = _not_selectable  # its accuracy on --train, for choosing a side's best before --eval


KINDS: dict[str, ConditionKind] = {}


def register_kind(kind: ConditionKind) -> ConditionKind:
    if kind.side not in (PROMPT_SIDE, FINETUNE_SIDE):
        raise ValueError(f"a condition kind is on the {PROMPT_SIDE!r} or the {FINETUNE_SIDE!r} side")
    KINDS[kind.name] = kind
    return kind


@contextmanager
def registered(kind: ConditionKind) -> Iterator[ConditionKind]:
    """A kind registered for the block only (a notebook's experiment, a test), the registry as it was after."""
    before = KINDS.get(kind.name)
    register_kind(kind)
    try:
        yield kind
    finally:
        if before is None:
            KINDS.pop(kind.name, None)
        else:
            KINDS[kind.name] = before


def kinds_on(side: str) -> tuple[str, ...]:
    return tuple(name for name, kind in KINDS.items() if kind.side == side)


# -- prompt, cot, base: templates on the base model -----------------------------------------------------
def _run_prompt(context: ConditionContext, evaluator: Evaluator, spec: ConditionSpec) -> ConditionResult:
    with context.adapters.using("base"):
        return evaluator.prompt(spec.label, spec.spec)


def _run_cot(context: ConditionContext, evaluator: Evaluator, spec: ConditionSpec) -> ConditionResult:
    with context.adapters.using("base"):
        return evaluator.cot(spec.label, spec.spec)


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


def _scored_on_train(context: ConditionContext, spec: ConditionSpec, result: ConditionResult) -> dict | None:
    """A template learns nothing from --train, so its accuracy there is a fair score to choose by."""
    if context.select_on is None or (spec.kind == "base" and not spec.spec):
        return None
    scored = KINDS[spec.kind].run(context, context.select_on, spec)
    return None if scored.interrupted else {"accuracy": scored.accuracy, "how": "scored on --train"}


def _base_identity(context: ConditionContext, evaluator: Evaluator, spec: ConditionSpec) -> dict | None:
    return _template_identity(context, evaluator, spec) if spec.spec else _adapter_identity(context, evaluator, spec)


# -- adapter: a trained adapter of the session or the store ------------------------------------------------
def _run_adapter(context: ConditionContext, evaluator: Evaluator, spec: ConditionSpec) -> ConditionResult:
    adapter = context.adapters.require(spec.spec.strip())
    with context.adapters.using(adapter.name):
        result = evaluator.adapter(spec.label, adapter)
    if context.flexibility is not None:
        result.extra["also"] = context.flexibility(adapter)
    return result


def _adapter_identity(context: ConditionContext, evaluator: Evaluator, spec: ConditionSpec) -> dict | None:
    adapter = context.adapters.reference(spec.spec.strip()) if spec.kind == "adapter" else context.adapters.newest()
    if adapter is None:
        return None
    return with_namespace({"kind": spec.kind, "adapter": adapter_fingerprint(adapter)}, evaluator,
                          [adapter.template.template] if adapter.template else [])


def _adapter_exists(context: ConditionContext, spec: ConditionSpec) -> None:
    context.adapters.reference(spec.spec.strip())


# -- fewshot NAME key=value ...: a named configuration, drawing from --train when given --------------------
def _fewshot_line(where: str, label: str, kind: str, raw: str) -> ConditionSpec:
    head, rest = first_word(raw)
    pairs, template = key_values(rest, where)
    if template.strip():
        raise FtpeError(f"{where}: after 'fewshot {head}' come key=value options only, not {template.strip()!r}.")
    options = options_from_pairs(FewShotOptions, pairs, where)
    return ConditionSpec(label, kind, head, options, tuple(key.replace("-", "_") for key, _ in pairs))


def fewshot_setup(context: ConditionContext, spec: ConditionSpec) -> tuple[FewShotConfig, FewShotOptions]:
    """The named configuration with the line's options on it, drawing from the training pool when there is one."""
    config = context.fewshot_configs[spec.spec.strip()]
    options = dataclasses.replace(spec.options, **{name: getattr(config, name) for name in _FROM_CONFIG
                                                   if name not in spec.given})
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


def _search_identity(evaluator: Evaluator, options: FewShotOptions) -> dict:
    lists = {option: evaluator.namespace.get(value) if isinstance(value, str) else value
             for option, value in (("instructions", options.instructions), ("verbalizers", options.verbalizers))}
    return {"search": options.search, "search_k": options.search_k, "val_split": options.val_split, "cv": options.cv,
            **{option: repr(value) for option, value in lists.items() if value is not None}}


def _fewshot_identity(context: ConditionContext, evaluator: Evaluator, spec: ConditionSpec) -> dict | None:
    config, options = fewshot_setup(context, spec)
    identity = fewshot_condition_identity(evaluator, config)
    return {**identity, **({"search": _search_identity(evaluator, options)} if options.search else {})}


def _fewshot_exists(context: ConditionContext, spec: ConditionSpec) -> None:
    name = spec.spec.strip()
    if name not in context.fewshot_configs:
        known = list(context.fewshot_configs)
        raise FtpeError(f"{spec.label}: no few-shot configuration named {name!r}.{did_you_mean(name, known)} "
                        "Run %%fewshot --name NAME first" + (f" (known: {', '.join(known)})." if known else "."))


def _fewshot_selection(context: ConditionContext, spec: ConditionSpec, result: ConditionResult) -> dict | None:
    searched = _searched(result)
    if searched is not None or context.cross_validate is None:
        return searched
    config, _ = fewshot_setup(context, spec)
    accuracy = context.cross_validate(config)
    return None if accuracy is None else {"accuracy": accuracy, "how": "cross-validation on --train"}


def _finetune_selection(context: ConditionContext, spec: ConditionSpec, result: ConditionResult) -> dict | None:
    """A searched fine-tune by its search's validation; one trained with val-split by that validation."""
    if result.extra.get("val_accuracy") is not None:
        return {"accuracy": float(result.extra["val_accuracy"]), "how": "its validation split of --train"}
    return _searched(result)


def _kept(log: list[dict]) -> dict:
    """The chosen row of a search log, without its per-evaluation trace (a search summary for the result)."""
    return {key: value for key, value in next(row for row in log if row["best"]).items() if key != "evaluations"}


# -- finetune METHOD key=value ... TEMPLATE: trained on --train, scored, forgotten -------------------------
def _finetune_line(where: str, label: str, kind: str, raw: str) -> ConditionSpec:
    head, rest = first_word(raw)
    pairs, template = key_values(rest, where)
    options = options_from_pairs(FinetuneOptions, pairs, where, method=head.lower())
    no_options_in_template(template, FinetuneOptions, where)
    template = unescape_newlines(template)
    if "{label}" not in template:
        raise FtpeError(f"{where}: a finetune line ends with its training template, with {{label}} where the answer "
                        r"goes: lora: finetune lora epochs=3 Review: {text}\nSentiment: {label}")
    return ConditionSpec(label, kind, template, options, tuple(key.replace("-", "_") for key, _ in pairs),
                         head.lower())


def finetune_setup(context: ConditionContext, spec: ConditionSpec) -> FinetuneOptions:
    return dataclasses.replace(spec.options, seed=spec.options.seed + context.seed_offset)


def _run_finetune(context: ConditionContext, evaluator: Evaluator, spec: ConditionSpec) -> ConditionResult:
    """Train on the pool, score the adapter, forget it: a curve trains one per size, kept as a result, not weights."""
    options = finetune_setup(context, spec)
    adapter = context.train(f"{spec.label} (n={len(context.train_pool)})", ExampleTemplate.from_body(spec.spec),
                            context.train_pool, options)
    context.adapters.add(adapter)
    try:
        with context.adapters.using(adapter.name):
            result = evaluator.adapter(spec.label, adapter)
        if context.flexibility is not None:
            result.extra["also"] = context.flexibility(adapter)
    finally:
        context.adapters.delete(adapter.name)
    result.kind, result.spec = "finetune", f"{spec.method} on {len(context.train_pool)} examples"
    if adapter.best_metric is not None and not adapter.search_log:
        result.extra["val_accuracy"] = adapter.best_metric  # on its own --val-split of the pool
    if adapter.search_log:
        result.extra["search"] = {"trials": len(adapter.search_log), "best": _kept(adapter.search_log)}
    return result


def _finetune_identity(context: ConditionContext, evaluator: Evaluator, spec: ConditionSpec) -> dict | None:
    options = dataclasses.asdict(finetune_setup(context, spec))
    return with_namespace({"kind": "finetune", "options": options, "template": spec.spec,
                           "train": data_fingerprint(context.train_pool)}, evaluator, [spec.spec])


def _has_training_data(context: ConditionContext, spec: ConditionSpec) -> None:
    if context.train_pool is None:
        raise FtpeError(f"{spec.label}: a finetune condition trains on --train; add --train VAR (and --sizes "
                        "16,64,256 for a learning curve).")


for _kind in (
    ConditionKind("prompt", _run_prompt, PROMPT_SIDE, reference_while_training=True, selection=_scored_on_train),
    ConditionKind("cot", _run_cot, PROMPT_SIDE, reference_while_training=True, selection=_scored_on_train),
    ConditionKind("fewshot", _run_fewshot, PROMPT_SIDE, learns_from_train=True, reference_while_training=True,
                  parse=_fewshot_line, identity=_fewshot_identity, check=_fewshot_exists, selection=_fewshot_selection),
    ConditionKind("adapter", _run_adapter, FINETUNE_SIDE, identity=_adapter_identity, check=_adapter_exists),
    ConditionKind("base", _run_base, PROMPT_SIDE, needs_spec=False, identity=_base_identity,
                  selection=_scored_on_train),
    ConditionKind("finetune", _run_finetune, FINETUNE_SIDE, learns_from_train=True, parse=_finetune_line,
                  identity=_finetune_identity, check=_has_training_data, selection=_finetune_selection),
):
    register_kind(_kind)


# -- a %%compare body --------------------------------------------------------------------------------------
def _parse_line(number: int, line: str) -> ConditionSpec:
    match = LINE.match(line)
    if not match:
        raise FtpeError(f"Line {number} of %%compare is not 'LABEL: KIND SPEC': {line.strip()!r}. "
                        r"Example: zero: prompt Review: {text}\nSentiment:")
    label, name, raw = match.group(1), match.group(2).lower(), match.group(3)
    kind = KINDS.get(name)
    if kind is None:
        raise FtpeError(f"Line {number}: unknown kind {name!r}.{did_you_mean(name, KINDS)} Kinds: {', '.join(KINDS)}.")
    if kind.needs_spec and not raw:
        raise FtpeError(f"Line {number}: {name} needs a spec after the kind (a template or a name).")
    return kind.parse(f"Line {number} ({label})", label, name, raw)


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
        KINDS[spec.kind].check(context, spec)


def condition_identity(context: ConditionContext, evaluator: Evaluator, spec: ConditionSpec) -> dict | None:
    """What a condition's numbers depend on beyond the eval set and settings (for the result cache); with --also,
    the other tasks too (a fine-tune's result then carries its scores on them)."""
    identity = KINDS[spec.kind].identity(context, evaluator, spec)
    if identity is not None and context.flexibility_identity:
        identity = {**identity, "also": context.flexibility_identity}
    return identity
