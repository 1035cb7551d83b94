"""The space ``%%finetune --search`` samples: one :class:`Dimension` per setting, a default per method.

``--space "lr=1e-5:1e-2 rank=4,8,16"``: ``A:B`` is a range (sampled on a log scale for the learning rate and the
L2 penalty, which span orders of magnitude; linearly otherwise; whole numbers for integer settings), ``a,b,c``
a list of choices, a single value a fixed one. Every value is checked against the option's own declared range,
so a space cannot ask for what ``%%finetune`` would refuse.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any

from ..errors import FtpeError, did_you_mean
from ..options import check_value, option_fields

LOG_SCALED = ("lr", "l2")
SEARCHABLE = ("lr", "rank", "alpha", "dropout", "epochs", "max_steps", "batch_size", "grad_accum", "warmup",
              "virtual_tokens", "l2", "unfreeze_groups", "max_len")
# per method: what moves accuracy most for it, around its default learning rate
DEFAULT_SPACES = {
    "lora": "lr=1e-4:1e-2 rank=4,8,16 alpha=8,16,32 epochs=1,2,3",
    "ia3": "lr=1e-3:3e-2 epochs=1,2,3",
    "prompt-tuning": "lr=3e-3:1e-1 virtual_tokens=8,16,32 epochs=1,2,3",
    "full": "lr=3e-6:1e-4 epochs=1,2,3",
    "unfreeze": "lr=3e-6:1e-4 epochs=1,2,3",
    "head": "lr=1e-4:1e-2 rank=4,8,16 epochs=1,2,3",
    "probe": "l2=1e-5:1e-1",
}


@dataclass(frozen=True)
class Dimension:
    """One setting of the search: a range (``low``-``high``) or a list of ``choices``."""

    name: str
    kind: type
    low: float | None = None
    high: float | None = None
    choices: tuple | None = None

    @property
    def log(self) -> bool:
        return self.name in LOG_SCALED

    def suggest(self, trial: Any) -> Any:
        """The trial's value, drawn by Optuna's sampler."""
        if self.choices is not None:
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind is int:
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, log=self.log)

    def contains(self, value: Any) -> bool:
        if self.choices is not None:
            return value in self.choices
        return value is not None and self.low <= value <= self.high

    def describe(self) -> str:
        if self.choices is not None:
            return f"{self.name}={','.join(f'{c:g}' for c in self.choices)}"
        return f"{self.name}={self.low:g}:{self.high:g}{' (log)' if self.log else ''}"


def _cast(field: dataclasses.Field, kind: type, text: str, part: str) -> Any:
    try:
        value = kind(float(text)) if kind is int and float(text).is_integer() else kind(text)
    except ValueError:
        raise FtpeError(f"--space: {part!r} is not a {kind.__name__} value for {field.name}.") from None
    check_value(field, value)
    return value


def _dimension(field: dataclasses.Field, kind: type, spec: str, part: str) -> Dimension:
    if ":" in spec:
        low_text, _, high_text = spec.partition(":")
        low, high = _cast(field, kind, low_text, part), _cast(field, kind, high_text, part)
        if not low < high:
            raise FtpeError(f"--space: {part!r} needs LOW:HIGH with LOW below HIGH.")
        return Dimension(field.name, kind, low=low, high=high)
    choices = tuple(dict.fromkeys(_cast(field, kind, item.strip(), part) for item in spec.split(",") if item.strip()))
    if not choices:
        raise FtpeError(f"--space: {part!r} has no value; write NAME=LOW:HIGH or NAME=a,b,c.")
    return Dimension(field.name, kind, choices=choices)


def parse_space(text: str, options_class: type) -> list[Dimension]:
    """``"lr=1e-5:1e-2 rank=4,8,16"`` as dimensions, each checked against ``options_class``'s declaration."""
    fields = {item.name: item for item in option_fields(options_class)}
    hints = typing.get_type_hints(options_class)
    dimensions: dict[str, Dimension] = {}
    for part in text.split():
        name, equals, spec = part.partition("=")
        name = name.replace("-", "_")
        if not equals or not spec:
            raise FtpeError(f"--space: {part!r} is not NAME=LOW:HIGH or NAME=a,b,c (e.g. lr=1e-5:1e-2 rank=4,8,16).")
        if name not in SEARCHABLE:
            raise FtpeError(f"--space: {name!r} is not a setting the search can vary.{did_you_mean(name, SEARCHABLE)} "
                            f"Settings: {', '.join(SEARCHABLE)}.")
        kind = int if "int" in str(hints[name]) else float
        dimensions[name] = _dimension(fields[name], kind, spec, part)
    if not dimensions:
        raise FtpeError("--space is empty; write e.g. \"lr=1e-5:1e-2 rank=4,8,16\", or leave it out for the "
                        "method's default space.")
    return list(dimensions.values())


def search_space(options: Any) -> list[Dimension]:
    """The space given with ``--space``, else the method's default one."""
    return parse_space(options.space or DEFAULT_SPACES[options.method], type(options))


def starting_point(options: Any, dimensions: list[Dimension]) -> dict[str, Any]:
    """The settings as given (or their defaults), where the space holds them: the search's first trial, so it
    never ends below the configuration the user would have trained anyway."""
    given = {"lr": options.learning_rate, "epochs": options.train_epochs}  # the defaults training would use
    values = {dimension.name: given.get(dimension.name, getattr(options, dimension.name)) for dimension in dimensions}
    return {name: value for name, value in values.items()
            if next(d for d in dimensions if d.name == name).contains(value)}
