"""Small static tables that render in a terminal and as HTML in a saved notebook."""

from __future__ import annotations

import html
from typing import Any


class KeyValueTable:
    """Two-column key/value table (``%ftpe status``)."""

    def __init__(self, title: str, rows: list[tuple[str, Any]]) -> None:
        self.title = title
        self.rows = rows

    def as_dict(self) -> dict[str, Any]:
        return dict(self.rows)

    def __str__(self) -> str:
        width = max(len(key) for key, _ in self.rows)
        return "\n".join([self.title] + [f"  {key:<{width}}  {value}" for key, value in self.rows])

    def _repr_pretty_(self, printer, cycle: bool) -> None:
        printer.text(str(self))

    def _repr_html_(self) -> str:
        body = "".join(f"<tr><th style='text-align:left'>{html.escape(str(k))}</th>"
                       f"<td style='text-align:left'>{html.escape(str(v))}</td></tr>" for k, v in self.rows)
        return f"<table><caption style='text-align:left'><b>{html.escape(self.title)}</b></caption>{body}</table>"
