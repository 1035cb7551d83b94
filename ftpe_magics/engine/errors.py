"""User-facing errors.

Every problem a user can fix (a typo in a template, a missing column, no network) is raised as
:class:`FtpeError`, whose message is one or two short lines naming the problem and the fix. The
magics turn it into an IPython ``UsageError`` so a notebook shows those lines, not a traceback,
and nothing in the session is touched by it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable


class FtpeError(Exception):
    """A problem in the user's input or environment, with a message that says how to fix it."""


class ContextTooLong(FtpeError):
    """A prompt longer than the model reads: a search skips that candidate, anything else reports it."""


def closest_names(name: str, candidates: Iterable[str], limit: int = 3) -> list[str]:
    """Names a user probably meant, for 'did you mean' hints."""
    return difflib.get_close_matches(name, list(candidates), n=limit, cutoff=0.6)


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    close = closest_names(name, candidates)
    return f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def check_text(text: str, where: str) -> None:
    """Text the tokenizer cannot encode (a lone surrogate, from a bad decode) is an error naming where it is."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise FtpeError(f"{where} holds text that is not valid Unicode (a lone surrogate, usually from a bad "
                        "decode). Clean it, e.g. text.encode('utf-8', 'replace').decode().") from None


_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/@\s]+)@")


def mask_credentials(text: str) -> str:
    """``http://user:secret@host`` -> ``http://***@host`` wherever a URI appears in ``text``: a message, a log line
    or a stored record never carries the user-info part of a URI (a password, a token)."""
    return _CREDENTIALS.sub(lambda match: f"{match.group('scheme')}***@", str(text))


class MaskedLog:
    """A log function with :func:`mask_credentials` applied to every line; ``.inner`` is the function wrapped."""

    def __init__(self, inner: Callable[[str], None]) -> None:
        self.inner = inner

    def __call__(self, message: str) -> None:
        self.inner(mask_credentials(message))
