"""ftpe_magics: prompt or fine-tune? A notebook workbench on one shared model session.

``%load_ext ftpe_magics`` registers the magics; ``from ftpe_magics import Session`` gives the same
features as a plain Python API.
"""

from __future__ import annotations

import warnings

from .config import Ftpe
from .errors import FtpeError
from .generation import GenerationSettings
from .results import PromptResult
from .session import Session, get_session

__all__ = ["Ftpe", "FtpeError", "GenerationSettings", "PromptResult", "Session", "get_session",
           "load_ipython_extension", "unload_ipython_extension"]
__version__ = "0.1.0"

# Two warnings the libraries raise on every use of a feature we use on purpose; each would print a
# site-packages path into the user's notebook. Nothing else is filtered.
warnings.filterwarnings("ignore", message="Position ids are not supported for parameter efficient tuning",
                        category=UserWarning)
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)


def load_ipython_extension(shell) -> None:
    from .magics import CELL_MAGICS, LINE_MAGICS, FtpeMagics

    session = get_session()
    config = Ftpe(parent=shell)
    session.config = config
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
