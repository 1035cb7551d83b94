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

__all__ = ["CompareResult", "FinetuneOptions", "Ftpe", "FtpeError", "GenerationSettings", "PromptResult", "Session",
           "TrainingObserver", "get_session", "load_ipython_extension", "runs", "unload_ipython_extension"]
__version__ = VERSION


def runs(kind: str | None = None, name: str | None = None, since: str | None = None):
    """The runs of the run store (every kernel's), newest first, as a DataFrame: what ``%ftpe history`` shows."""
    return get_session().history_table(kind, name, since)


def _register_in_running_shell() -> None:
    """Inside IPython, results show as HTML even before %load_ext; outside it, nothing is imported."""
    import sys

    if "IPython" not in sys.modules:
        return
    shell = sys.modules["IPython"].get_ipython()
    if shell is not None:
        from .display import register_formatters

        register_formatters(shell)


_register_in_running_shell()


def load_ipython_extension(shell) -> None:
    from .display import register_formatters
    from .magics import CELL_MAGICS, LINE_MAGICS, FtpeMagics

    register_formatters(shell)
    session = get_session()
    config = Ftpe(parent=shell)
    session.config = config
    session.log = print  # in a notebook, the session's one-line notices go to the cell's output
    shell.configurables.append(config)
    shell.register_magics(FtpeMagics(shell, session))
    names = [f"%{name}" for name in LINE_MAGICS] + [f"%%{name}" for name in CELL_MAGICS]
    print(f"ftpe_magics {__version__}: {', '.join(names)} ready (%ftpe? for help).")


def unload_ipython_extension(shell) -> None:
    from .magics import CELL_MAGICS, LINE_MAGICS

    magics = shell.magics_manager.magics
    for name in LINE_MAGICS:
        magics["line"].pop(name, None)
    for name in CELL_MAGICS:
        magics["cell"].pop(name, None)
    shell.magics_manager.registry.pop("FtpeMagics", None)
    shell.configurables[:] = [c for c in shell.configurables if not isinstance(c, Ftpe)]
