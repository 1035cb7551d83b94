"""Options declared once: a dataclass field carries its default, help text, choices and range.

Like peft's config dataclasses, every option of a magic is one field here; the magics build their
``magic_arguments`` from these fields, the README table is checked against them, and
:func:`check_ranges` validates every value (NaN and infinities included) before any work starts,
so a bad value is a one-line error naming the flag, never a traceback from deep inside a library.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import FtpeError, did_you_mean

NORMALISATIONS = ("none", "tokens", "chars")
SELECTIONS = ("random", "balanced", "similar")


def option(default: Any, help: str, *, choices: Sequence[str] | None = None, low: float | None = None,
           high: float | None = None, low_open: bool = False, high_open: bool = False, metavar: str | None = None,
           flag: str | None = None, required: bool = False, config: str | None = None, nargs: str | None = None) -> Any:
    """A dataclass field that is also a magic option.

    ``low``/``high`` bound numbers (``*_open`` excludes the bound); ``config`` names the ``Ftpe``
    setting that applies when the option is left at ``None``; ``flag`` overrides ``--field-name``; ``nargs``
    lets the option take several words (``--since 2026-12-02 14:00``).
    """
    meta = {"help": help, "choices": tuple(choices) if choices else None, "low": low, "high": high,
            "low_open": low_open, "high_open": high_open, "metavar": metavar, "flag": flag, "required": required,
            "config": config, "nargs": nargs}
    return field(default=default, metadata={"ftpe": meta})


def option_fields(options_class: type) -> list[dataclasses.Field]:
    """The fields of ``options_class`` that are magic options, in declaration order."""
    return [f for f in dataclasses.fields(options_class) if "ftpe" in f.metadata]


def flag_of(item: dataclasses.Field) -> str:
    return item.metadata["ftpe"]["flag"] or "--" + item.name.replace("_", "-")


def _range_text(meta: dict) -> str:
    low, high = meta["low"], meta["high"]
    if low is not None and high is not None:
        return (f"{'above' if meta['low_open'] else 'at least'} {low:g} and "
                f"{'below' if meta['high_open'] else 'at most'} {high:g}")
    if low is not None:
        return f"{'above' if meta['low_open'] else 'at least'} {low:g}"
    return f"{'below' if meta['high_open'] else 'at most'} {high:g}"


def check_value(item: dataclasses.Field, value: Any) -> None:
    """Raise a one-line :class:`FtpeError` when ``value`` is outside the option's declared range."""
    meta = item.metadata["ftpe"]
    if value is None:
        return
    if meta["choices"] and value not in meta["choices"]:
        raise FtpeError(f"{flag_of(item)} must be one of {', '.join(meta['choices'])}, not {value!r}.")
    if meta["low"] is None and meta["high"] is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise FtpeError(f"{flag_of(item)} must be a finite number {_range_text(meta)}, not {value!r}.")
    low, high = meta["low"], meta["high"]
    below = low is not None and (value <= low if meta["low_open"] else value < low)
    above = high is not None and (value >= high if meta["high_open"] else value > high)
    if below or above:
        raise FtpeError(f"{flag_of(item)} must be {_range_text(meta)} (got {value:g}).")


def check_ranges(options: Any) -> None:
    """Check every option field of a dataclass instance against its declaration."""
    for item in option_fields(type(options)):
        check_value(item, getattr(options, item.name))


def with_config_defaults(options: Any, config: Any) -> Any:
    """A copy of ``options`` where every field left at ``None`` takes its ``Ftpe`` setting."""
    updates = {}
    for item in option_fields(type(options)):
        setting = item.metadata["ftpe"]["config"]
        if setting and getattr(options, item.name) is None:
            updates[item.name] = getattr(config, setting)
    return dataclasses.replace(options, **updates) if updates else options


def split_list(text: str | Sequence | None, what: str, cast: type = str) -> list | None:
    """``"a, b,c"`` (or a list) to a list, with a one-line error naming the option for a bad item."""
    if text is None or text == "":
        return None
    items = [part.strip() for part in text.split(",")] if isinstance(text, str) else list(text)
    try:
        return [cast(item) for item in items if item != ""]
    except (TypeError, ValueError):
        raise FtpeError(f"{what} takes a comma-separated list of {cast.__name__} values, e.g. 0,1,2,4,8; "
                        f"got {text!r}.") from None


def _pair_value(item: dataclasses.Field, hint: Any, text: str, where: str) -> Any:
    kinds = [kind for kind in typing.get_args(hint) if kind is not type(None)] or [hint]
    if bool in kinds:
        if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise FtpeError(f"{where}: {item.name}={text} takes true or false.")
        return text.lower() in ("true", "1", "yes")
    for kind in (int, float, str):
        if kind in kinds:
            try:
                return kind(text)
            except ValueError:
                continue
    raise FtpeError(f"{where}: {item.name}={text} is not a {' or '.join(k.__name__ for k in kinds)} value.")


def options_from_pairs(options_class: type, pairs: Sequence[tuple[str, str]], where: str, **given: Any) -> Any:
    """An option object from ``key=value`` pairs written in a cell (``max-steps=20`` or ``max_steps=20``), on top of
    ``given`` values; an unknown key is a one-line error naming the options there are."""
    fields = {item.name: item for item in option_fields(options_class)}
    hints = typing.get_type_hints(options_class)
    values = dict(given)
    for key, text in pairs:
        name = key.replace("-", "_")
        if name not in fields:
            raise FtpeError(f"{where}: {key!r} is not an option.{did_you_mean(name, fields)} Options: "
                            f"{', '.join(flag_of(f)[2:] for f in fields.values())}.")
        values[name] = _pair_value(fields[name], hints[name], text, where)
    try:
        return options_class(**values)
    except FtpeError as error:
        raise FtpeError(f"{where}: {error}") from None


@dataclass
class DataOptions:
    """How a labelled dataset is read and scored (shared by %%fewshot, %%compare and %%finetune)."""

    input_col: str = option("text", "Column holding the input text.")
    label_col: str = option("label", "Column holding the label, or the reference answer for generation tasks.")
    labels: str | None = option(None, "The label set, comma-separated (default: the labels seen in the data).")
    label_names: str | None = option(None, "Label values as words, e.g. 0=negative,1=positive.")


@dataclass
class EvalOptions:
    """How an eval set is scored (%%fewshot and %%compare)."""

    limit: int | None = option(None, "Score only the first N eval examples.", low=1)
    norm: str = option("none", "Length normalisation of label log-likelihoods.", choices=NORMALISATIONS)
    batch_size: int | None = option(None, "Examples per forward pass (default: Ftpe.batch_size).", low=1, high=4096,
                                    config="batch_size")
    max_new_tokens: int | None = option(None, "Tokens generated by generation and chain-of-thought conditions.",
                                        low=1, high=32768)
    metric: str | None = option(None, "Score generated text: exact, contains, regex, f1, json (field-level F1 of "
                                      "the first JSON object, and the share that parsed), json-exact, rouge-l, chrf, "
                                      "similarity, judge (a model's grade), or a notebook function "
                                      "f(prediction, reference) -> float or dict of floats.")
    judge_template: str | None = option(None, "With --metric judge: the notebook variable holding the judge's "
                                              "prompt, with {output} and {reference} (or {rubric}).")
    judge_grades: str | None = option(None, "With --metric judge: the grades, worst first, comma-separated "
                                            "(default no,yes); the score is the expected grade in [0, 1].")
    seed: int = option(0, "Seed for drawing examples and for sampling.")
    no_cache: bool = option(False, "Run every condition again even when the run store holds an equal run.")

    def __post_init__(self) -> None:
        check_ranges(self)


@dataclass
class FewShotOptions:
    """What %%fewshot builds: which demonstrations, how many, in how many orders."""

    k: int = option(4, "Examples in the prompt.", low=0, high=256)
    select: str = option("random", "random; balanced (round-robin over labels); similar (nearest by the model's "
                                   "own embeddings).", choices=SELECTIONS)
    orders: int = option(1, "Score the same examples in N orders: mean and spread.", low=1, high=50)
    sweep_k: str | None = option(None, "Comma-separated k values, e.g. 0,1,2,4,8: accuracy against k.")
    allow_overlap: bool = option(False, "Keep training examples whose text is also in the eval set "
                                        "(excluded by default).")
    calibrate: bool = option(False, "Contextual calibration: divide out the label bias the prompt shows on "
                                    "content-free inputs (N/A, empty, [MASK]).")
    search: int | None = option(None, "Try N candidate configurations (demonstrations, order, k, instructions, label "
                                      "words) on a validation split of --train; score only the best on --eval.", low=1,
                                high=500)
    search_k: str = option("0,1,2,4,8", "With --search: the k values to try (0: the zero-shot prompt, always one "
                                        "of the candidates when listed; calibration on or off is tried as well).")
    instructions: str | list | None = option(None, "With --search: a notebook variable holding a list of "
                                                   "instruction variants.", metavar="VAR")
    verbalizers: str | list | None = option(None, "With --search: a notebook variable holding a list of dicts "
                                                  "label -> word.", metavar="VAR")
    cv: int | None = option(None, "With --search: score each candidate by K-fold cross-validation on --train (every "
                                  "example held out once, demonstrations from the other folds); default 5 while "
                                  "--train has at most 512 usable examples, else one --val-split; 1: one split.",
                            low=1, high=20)
    val_split: float = option(0.2, "With --search: the share of --train held out to score candidates (seeded; the "
                                   "eval set is never read).", low=0, low_open=True, high=1, high_open=True)

    def __post_init__(self) -> None:
        check_ranges(self)
        sweep = split_list(self.sweep_k, "--sweep-k", int)
        if sweep is not None and (not sweep or min(sweep) < 0):
            raise FtpeError("--sweep-k takes k values of 0 or more, e.g. 0,1,2,4,8.")
        search_k = split_list(self.search_k, "--search-k", int)
        if not search_k or min(search_k) < 0:
            raise FtpeError("--search-k takes k values of 0 or more, e.g. 1,2,4,8.")
        if self.search and sweep is not None:
            raise FtpeError("--search keeps one configuration and --sweep-k scores each k: use one of them.")
        if not self.search and (self.instructions is not None or self.verbalizers is not None):
            raise FtpeError("--instructions and --verbalizers are variants for --search N to try; add --search.")

    @property
    def sweep(self) -> list[int] | None:
        return split_list(self.sweep_k, "--sweep-k", int)

    @property
    def search_ks(self) -> list[int]:
        return split_list(self.search_k, "--search-k", int)


@dataclass
class CompareOptions:
    """How %%compare runs its conditions."""

    samples: int = option(1, "Samples per example for consistency (labels drawn from the model's label "
                             "distribution; generation at temperature 0.7).", low=1, high=100)
    answer_regex: str | None = option(None, "How chain-of-thought answers are found in the reasoning (the last "
                                            "match; group 1 if it has groups).")
    also: str | None = option(None, "Flexibility: NAME=VAR[,NAME=VAR], other labelled tasks, each VAR holding "
                                    "{'data': rows, 'template': 'Request: {text}\\nIntent: {label}'}; the base model "
                                    "and every fine-tune are scored on them with that template.", metavar="NAME=VAR")
    study: bool = option(False, "With --train and one example template as the cell: the standard study (zero-shot, "
                                "a cross-validated few-shot search, probe, head, a searched LoRA) on --sizes auto "
                                "unless --sizes is given.")

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.answer_regex is not None:
            import re

            try:
                re.compile(self.answer_regex)
            except re.error as error:
                raise FtpeError(f"--answer-regex {self.answer_regex!r} is not a valid regular expression: "
                                f"{error}.") from None


@dataclass
class CurveOptions:
    """%%compare --train: the learning curve's sizes and draws."""

    sizes: str | None = option(None, "With --train: training-set sizes for a learning curve, e.g. 16,64,256,1024 "
                                     "(nested: the first n of one seeded shuffle; default: all of --train); auto: "
                                     "double from 16 until the fine-tune is significantly ahead, then bisect to "
                                     "within a factor of 1.5.")
    repeats: int = option(1, "With --sizes: draws per size, each with the seeds moved by one; the table shows the "
                             "spread and the crossover uses all of them.", low=1, high=20)
    budget_minutes: float | None = option(None, "With --sizes auto: stop starting new sizes after M minutes.", low=0,
                                          low_open=True, high=10080)

    def __post_init__(self) -> None:
        check_ranges(self)
        sizes = self.size_list
        if sizes is not None and (not sizes or min(sizes) < 1):
            raise FtpeError("--sizes takes training-set sizes of 1 or more, e.g. 16,64,256,1024, or auto.")
        if sizes is None and not self.auto and self.repeats > 1:
            raise FtpeError("--repeats draws another n examples per repeat; give --sizes below the size of --train.")
        if self.budget_minutes is not None and not self.auto:
            raise FtpeError("--budget-minutes bounds the adaptive curve; add --sizes auto.")

    @property
    def auto(self) -> bool:
        return isinstance(self.sizes, str) and self.sizes.strip().lower() == "auto"

    @property
    def size_list(self) -> list[int] | None:
        if self.auto:
            return None
        sizes = split_list(self.sizes, "--sizes", int)
        return sorted(set(sizes)) if sizes else sizes



def spread_keywords(given: dict[str, Any], *defaults: Any) -> tuple:
    """Spread keyword options over the option objects that declare them; an unknown keyword is an error."""
    remaining = dict(given)
    out = []
    for options in defaults:
        names = {f.name for f in dataclasses.fields(options)}
        mine = {key: remaining.pop(key) for key in list(remaining) if key in names}
        out.append(dataclasses.replace(options, **mine) if mine else options)
    if remaining:
        raise TypeError(f"unknown option(s): {', '.join(sorted(remaining))}")
    return tuple(out)
