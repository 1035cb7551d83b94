"""Diffs between two runs of a named prompt, built on difflib.

Text gets a unified diff (readable in a terminal and in logs); the display package adds a
word-level inline HTML diff (``display.html.inline_html_diff``).
"""

from __future__ import annotations

import difflib


def unified_text_diff(old: str, new: str, old_label: str = "previous", new_label: str = "now") -> str:
    lines = difflib.unified_diff(old.splitlines(), new.splitlines(), old_label, new_label, lineterm="")
    return "\n".join(lines) or "(no change)"


def changed_settings(old: dict, new: dict) -> dict[str, tuple]:
    """Settings whose values differ, as ``{key: (old, new)}``."""
    return {key: (old.get(key), new.get(key)) for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)}
