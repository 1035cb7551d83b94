"""Context managers that keep a call's side effects to itself: random state and warning filters.

Seeding through ``torch.manual_seed`` or installing warning filters at import time would change the
user's own notebook (their random draws, the warnings they see); the engine does neither outside
the block that needs it.
"""

from __future__ import annotations

import logging
import random
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

# Two notices the libraries raise on every use of a feature we use on purpose; each would print a
# site-packages path into the user's notebook.
_EXPECTED_NOTICES = (
    ("Position ids are not supported for parameter efficient tuning", UserWarning),
    ("`is_gradient_checkpointing` is deprecated", FutureWarning),
    # QLoRA on CPU: a one-row 4-bit matmul whose input needs no gradient sits in the graph; nothing flows through it
    ("bitsandbytes::gemv_4bit: an autograd kernel was not registered", UserWarning),
)


class _DropOptionalKernelNotice(logging.Filter):
    """bitsandbytes (imported by peft whenever it is installed) warns at import that an optional CPU kernel
    package is missing; it runs without it, and the notice would sit in every notebook's first output."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "from kernels-community" not in record.getMessage()


logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(_DropOptionalKernelNotice())


@contextmanager
def quiet_library_notices() -> Iterator[None]:
    """Silence the expected library notices inside the block only."""
    with warnings.catch_warnings():
        for message, category in _EXPECTED_NOTICES:
            warnings.filterwarnings("ignore", message=message, category=category)
        yield


@contextmanager
def seeded(seed: int | None, device: torch.device | str = "cpu") -> Iterator[None]:
    """Random draws inside the block come from ``seed``; the caller's torch RNG state is restored after.

    ``generate`` samples from torch's global generator and takes no ``generator`` argument, so the
    global state is forked for the block instead.
    """
    if seed is None:
        yield
        return
    cuda = torch.device(device).type == "cuda" and torch.cuda.is_available()
    with torch.random.fork_rng(devices=[torch.cuda.current_device()] if cuda else []):
        torch.manual_seed(seed)
        yield


@contextmanager
def global_rngs_kept(device: torch.device | str = "cpu") -> Iterator[None]:
    """Restore Python's, NumPy's and torch's global RNG states after a block that reseeds them (``Trainer``)."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    cuda = torch.device(device).type == "cuda" and torch.cuda.is_available()
    try:
        with torch.random.fork_rng(devices=[torch.cuda.current_device()] if cuda else []):
            yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
