"""Rendering engine results: pure HTML builders (``html``), tabs with a static fallback
(``widgets``), matplotlib figures as PNG (``plots``) and the live training view
(``training_view``, one training observer among others). Nothing here computes a result."""

from __future__ import annotations

from typing import Any


def html_formatters() -> dict[type, Any]:
    """Engine result types and the functions that render them as static HTML (the engine never imports these)."""
    from ..engine.evaluation.comparison import CompareResult
    from ..engine.prompting.prompt_result import PromptResult
    from .html import compare_html, prompt_result_html

    return {CompareResult: compare_html, PromptResult: prompt_result_html}
