"""Turning what a user iterates over (``--over``) into a list of dicts."""

from __future__ import annotations

from typing import Any

from .errors import FtpeError


def as_rows(value: Any, what: str = "--over") -> list[dict]:
    """A list of strings becomes ``{"item": s}`` rows; dicts and DataFrame rows keep their fields."""
    if hasattr(value, "to_dict") and hasattr(value, "columns"):  # pandas DataFrame
        rows = value.to_dict("records")
    elif hasattr(value, "column_names") and hasattr(value, "to_list"):  # datasets.Dataset
        rows = value.to_list()
    elif isinstance(value, (list, tuple)):
        rows = [item if isinstance(item, dict) else {"item": item} for item in value]
        if any(not isinstance(item, (dict, str, int, float)) for item in value):
            raise FtpeError(f"{what} takes a list of strings, a list of dicts or a DataFrame.")
    else:
        raise FtpeError(f"{what} takes a list of strings, a list of dicts or a DataFrame, not {type(value).__name__}.")
    if not rows:
        raise FtpeError(f"{what} is empty: there are no rows to run.")
    return [{str(key): val for key, val in row.items()} for row in rows]
