"""The text of a ``%%compare`` line: ``LABEL: KIND REST``, and the ``key=value`` options a kind may take.

Only syntax lives here (quotes, where options end and a template begins); what a kind does with its
line is its own entry in :mod:`.condition_kinds`.
"""

from __future__ import annotations

import re

from ..errors import FtpeError, closest_names
from ..options import option_fields

LINE = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*:\s*([A-Za-z_-]+)\s*(.*?)\s*$")
_KEY = re.compile(r"\s*([A-Za-z][A-Za-z0-9_-]*)=")
_WORD = re.compile(r"\s*(\S+)(?:\s+|$)")


def first_word(text: str) -> tuple[str, str]:
    """The first word of ``text`` (a configuration name, a method) and the rest."""
    word = _WORD.match(text)
    return word.group(1), text[word.end():]


def key_values(text: str, where: str) -> tuple[tuple[tuple[str, str], ...], str]:
    """Leading ``key=value`` options of a line (a value with spaces in matching quotes), and the text after them;
    a value that opens a quote it never closes is an error, never a value with a character cut off."""
    pairs = []
    while match := _KEY.match(text):
        key, rest = match.group(1), text[match.end():]
        if rest[:1] in ("'", '"'):
            end = rest.find(rest[0], 1)
            if end < 0:
                raise FtpeError(f"{where}: {key}={rest.split()[0] if rest.split() else rest} opens a quote that is "
                                f"never closed; write {key}={rest[0]}...{rest[0]}.")
            value, rest = rest[1:end], rest[end + 1:]
            if rest[:1].strip():
                raise FtpeError(f"{where}: {key}= has text right after its closing quote; put a space after it.")
        else:
            value = rest.split(None, 1)[0] if rest.strip() and not rest[0].isspace() else ""
            rest = rest[len(value):]
        pairs.append((key, value))
        text = rest.lstrip()
    return tuple(pairs), text


def no_options_in_template(template: str, options_class: type, where: str) -> None:
    """A ``key=value`` naming an option (or nearly) after the template began would be read as template text."""
    names = [item.name for item in option_fields(options_class)]
    for token in template.split():
        match = _KEY.match(token)
        if match and token[match.end():]:
            name = match.group(1).replace("-", "_")
            if name in names or closest_names(name, names):
                raise FtpeError(f"{where}: {token} stands inside the template; put key=value options before the "
                                "template (finetune METHOD key=value ... TEMPLATE).")
