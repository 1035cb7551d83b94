"""ftpe_magics: prompt or fine-tune? A notebook workbench on one shared model session.

``%load_ext ftpe_magics`` registers the magics; ``from ftpe_magics import Session`` gives the same
features as a plain Python API. The work is done by :mod:`ftpe_magics.engine` (no IPython in it);
:mod:`ftpe_magics.display` renders results; :mod:`ftpe_magics.magics` parses cells.
"""

from __future__ import annotations

from .engine import (
    CompareResult,
    FinetuneOptions,
    Ftpe,
    FtpeError,
    GenerationSettings,
    PromptResult,
    Session,
    TrainingObserver,
    get_session,
)
from .engine.config import VERSION
from .extension import ShellChanges, install_formatters, install_magics, remove_formatters, remove_magics

__all__ = ["CompareResult", "FinetuneOptions", "Ftpe", "FtpeError", "GenerationSettings", "PromptResult", "Session",
           "TrainingObserver", "get_session", "load_ipython_extension", "runs", "unload_ipython_extension"]
__version__ = VERSION


def runs(kind: str | None = None, name: str | None = None, since: str | None = None):
    """The runs of the run store (every kernel's), newest first, as a DataFrame: what ``%ftpe history`` shows."""
    return get_session().history_table(kind, name, since)


_CHANGES: dict[int, ShellChanges] = {}  # id(shell) -> what loading the extension changed in it


def _register_in_running_shell() -> None:
    """Inside IPython, results show as HTML even before %load_ext (undone by %unload_ext); outside it, nothing is
    imported."""
    import sys

    if "IPython" not in sys.modules:
        return
    shell = sys.modules["IPython"].get_ipython()
    if shell is not None:
        install_formatters(shell, _CHANGES.setdefault(id(shell), ShellChanges()))


_register_in_running_shell()


def load_ipython_extension(shell) -> None:
    from .magics import CELL_MAGICS, LINE_MAGICS, FtpeMagics

    changes = _CHANGES.setdefault(id(shell), ShellChanges())
    install_formatters(shell, changes)
    session = get_session()
    config = Ftpe(parent=shell)
    if changes.configurable is None:
        changes.log, changes.config = session.log, session.config
    session.config = config
    session.log = print  # in a notebook, the session's one-line notices go to the cell's output
    shell.configurables.append(config)
    changes.configurable = config
    install_magics(shell, FtpeMagics(shell, session), changes)
    names = [f"%{name}" for name in LINE_MAGICS] + [f"%%{name}" for name in CELL_MAGICS]
    print(f"ftpe_magics {__version__}: {', '.join(names)} ready (%ftpe? for help).")


def unload_ipython_extension(shell) -> None:
    """Undo everything loading did: formatters, magics, the session's log and config, the configurable."""
    changes = _CHANGES.pop(id(shell), None)
    if changes is None:
        return
    remove_formatters(shell, changes)
    remove_magics(shell, changes)
    if changes.configurable is not None:
        shell.configurables[:] = [c for c in shell.configurables if c is not changes.configurable]
        session = get_session()
        session.log, session.config = changes.log, changes.config
