"""Rendering engine results: pure HTML builders (``html``), tabs with a static fallback
(``widgets``), matplotlib figures as PNG (``plots``) and the live training view
(``training_view``, one training observer among others). Nothing here computes a result."""

from __future__ import annotations

from typing import Any


def register_formatters(shell: Any) -> None:
    """Teach IPython to show engine results as static HTML; the engine itself never imports the display."""
    from ..engine.evaluation.comparison import CompareResult
    from ..engine.prompting.prompt_result import PromptResult
    from .html import compare_html, prompt_result_html

    formatter = shell.display_formatter.formatters["text/html"]
    formatter.for_type(CompareResult, compare_html)
    formatter.for_type(PromptResult, prompt_result_html)
