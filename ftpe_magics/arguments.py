"""Magic arguments built from the engine's option dataclasses, and option objects built back from them.

An option is declared once, as a field of an engine dataclass (``engine.options``,
``GenerationSettings``, ``FinetuneOptions``); this module turns each field into an IPython
``@argument`` (flag, type, default, choices, help) and a parsed line back into the dataclass, so the
magics never forward keywords by hand and a new option is one field.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from typing import Any

from IPython.core.magic_arguments import argument, parse_argstring

from .engine.options import flag_of, option_fields


def _value_type(hint: Any) -> type:
    """``int | None`` -> int; ``bool`` stays bool (a switch)."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        members = [member for member in typing.get_args(hint) if member is not type(None)]
        return members[0]
    return hint


def _help(item: dataclasses.Field) -> str:
    meta = item.metadata["ftpe"]
    text = meta["help"]
    if item.default not in (None, False) and "default" not in text:
        text += f" (default: {item.default})"
    return text


def _argument_for(item: dataclasses.Field, hint: Any) -> Callable:
    meta = item.metadata["ftpe"]
    value_type = _value_type(hint)
    if value_type is bool:
        return argument(flag_of(item), action="store_true", help=_help(item))
    kwargs: dict[str, Any] = {"default": item.default, "help": _help(item)}
    if meta["choices"]:
        kwargs["choices"] = meta["choices"]
    else:
        kwargs["type"] = value_type
    if meta["metavar"]:
        kwargs["metavar"] = meta["metavar"]
    if meta.get("nargs"):
        kwargs["nargs"] = meta["nargs"]
    return argument(flag_of(item), **kwargs)


def dataset_argument(flag: str, role: str, required: bool) -> Callable:
    """``--train`` or ``--eval``: a notebook variable or a file path, declared once for every magic."""
    return argument(flag, metavar="VAR", required=required, default=None,
                    help=f"{role}: a notebook variable or a file path.")


def option_arguments(*options_classes: type) -> Callable[[Callable], Callable]:
    """A decorator adding one ``@argument`` per option field of each class, in declaration order."""

    def decorate(func: Callable) -> Callable:
        # magic_arguments reads decorators bottom-up, so apply them last field first
        for options_class in reversed(options_classes):
            hints = typing.get_type_hints(options_class)
            for item in reversed(option_fields(options_class)):
                func = _argument_for(item, hints[item.name])(func)
        return func

    return decorate


def build(options_class: type, args: Any) -> Any:
    """The option object for a parsed line: every field read from the namespace by its own name."""
    values = {item.name: getattr(args, item.name) for item in option_fields(options_class)}
    for item in option_fields(options_class):  # several words (nargs) come back as one text
        if item.metadata["ftpe"].get("nargs") and isinstance(values[item.name], list):
            values[item.name] = " ".join(values[item.name])
    return options_class(**values)


def parse(magic: Callable, line: str):
    """``parse_argstring`` keeps the quotes around a quoted value (it splits like Windows' shell); strip them."""
    args = parse_argstring(magic, line)
    for key, value in vars(args).items():
        if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            setattr(args, key, value[1:-1])
    return args
