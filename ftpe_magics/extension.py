"""``%load_ext ftpe_magics`` and ``%unload_ext ftpe_magics``: what loading changes in the shell, recorded so
that unloading puts each thing back as it was (the HTML formatters, the session's log and config, the magics
and the shell's configurables).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ShellChanges:
    """What one load changed in one shell, and what was there before."""

    formatters: dict[type, Any] = field(default_factory=dict)  # result type -> the formatter it had (None: none)
    magics: dict[tuple[str, str], Any] = field(default_factory=dict)  # (kind, name) -> the magic it had
    log: Any = None
    config: Any = None
    configurable: Any = None


def install_formatters(shell: Any, changes: ShellChanges) -> None:
    """Teach the shell to show results as HTML, keeping the formatters it had for those types."""
    from .display import html_formatters

    formatter = shell.display_formatter.formatters["text/html"]
    for result_type, render in html_formatters().items():
        previous = formatter.for_type(result_type, render)
        changes.formatters.setdefault(result_type, previous)


def remove_formatters(shell: Any, changes: ShellChanges) -> None:
    formatter = shell.display_formatter.formatters["text/html"]
    for result_type, previous in changes.formatters.items():
        if previous is None:
            formatter.pop(result_type, None)
        else:
            formatter.for_type(result_type, previous)
    changes.formatters.clear()


def install_magics(shell: Any, magics: Any, changes: ShellChanges) -> None:
    """Register the magics, keeping any magic of the same name the shell had (restored at unload)."""
    for kind, names in magics.magics.items():
        for name in names:
            changes.magics[(kind, name)] = shell.find_magic(name, kind)
    shell.register_magics(magics)


def remove_magics(shell: Any, changes: ShellChanges) -> None:
    manager = shell.magics_manager
    for (kind, name), previous in changes.magics.items():
        if previous is not None:
            manager.register_function(previous, magic_kind=kind, magic_name=name)
        else:  # IPython has no call that unregisters a magic: its table is the registry
            manager.magics[kind].pop(name, None)
    magics = manager.registry.pop("FtpeMagics", None)
    shell.configurables[:] = [c for c in shell.configurables if c is not magics]  # register_magics added it
    changes.magics.clear()
