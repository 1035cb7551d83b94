"""Diffs between two runs of a named prompt, built on difflib.

Text gets a unified diff (readable in a terminal and in logs); HTML gets a word-level inline diff
with deletions struck through and insertions highlighted, which is what a reader scans for when a
prompt tweak changed one phrase of the answer.
"""

from __future__ import annotations

import difflib
import html
import re

_WORDS = re.compile(r"\s+|[^\s]+")
_DEL_STYLE = "background:#fdd;color:#900;text-decoration:line-through"
_INS_STYLE = "background:#dfd;color:#060"


def unified_text_diff(old: str, new: str, old_label: str = "previous", new_label: str = "now") -> str:
    lines = difflib.unified_diff(old.splitlines(), new.splitlines(), old_label, new_label, lineterm="")
    return "\n".join(lines) or "(no change)"


def inline_html_diff(old: str, new: str) -> str:
    """Word-level diff as HTML: ``<del>`` for removed words, ``<ins>`` for added ones."""
    old_words, new_words = _WORDS.findall(old), _WORDS.findall(new)
    parts = []
    matcher = difflib.SequenceMatcher(a=old_words, b=new_words, autojunk=False)
    for op, a0, a1, b0, b1 in matcher.get_opcodes():
        if op == "equal":
            parts.append(html.escape("".join(old_words[a0:a1])))
            continue
        if a1 > a0:
            parts.append(f'<del style="{_DEL_STYLE}">{html.escape("".join(old_words[a0:a1]))}</del>')
        if b1 > b0:
            parts.append(f'<ins style="{_INS_STYLE}">{html.escape("".join(new_words[b0:b1]))}</ins>')
    return "".join(parts)


def changed_settings(old: dict, new: dict) -> dict[str, tuple]:
    """Settings whose values differ, as ``{key: (old, new)}``."""
    return {key: (old.get(key), new.get(key)) for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)}
