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
    # LLM.int8() on CPU warns at every matmul that it casts its input to fp16
    (".*MatMul8bitLt: inputs will be cast", UserWarning),
)
_OPTIONAL_KERNEL_LOGGER = "bitsandbytes.backends.cpu.ops"


def _not_the_optional_kernel_notice(record: logging.LogRecord) -> bool:
    """bitsandbytes (imported by peft whenever it is installed) logs at import that an optional CPU kernel
    package is missing; it runs without it, and the notice would sit in a notebook's first output."""
    return "from kernels-community" not in record.getMessage()


@contextmanager
def quiet_library_notices() -> Iterator[None]:
    """Silence the expected library notices inside the block only: the warning filters and the logging filter
    are the caller's own again after it (``%unload_ext`` leaves nothing of ours behind)."""
    logger = logging.getLogger(_OPTIONAL_KERNEL_LOGGER)
    logger.addFilter(_not_the_optional_kernel_notice)
    try:
        with warnings.catch_warnings(), _no_library_progress_bars():
            for message, category in _EXPECTED_NOTICES:
                warnings.filterwarnings("ignore", message=message, category=category)
            yield
    finally:
        logger.removeFilter(_not_the_optional_kernel_notice)


@contextmanager
def _no_library_progress_bars() -> Iterator[None]:
    """transformers' and the hub's own bars (loading weights, writing shards) off inside the block: a notebook
    would save them as widgets stuck at 0%. The user's setting is theirs again after."""
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
    from transformers.utils import logging as transformers_logging

    hub_was_on, transformers_was_on = not are_progress_bars_disabled(), transformers_logging.is_progress_bar_enabled()
    disable_progress_bars()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if hub_was_on:
            enable_progress_bars()
        if transformers_was_on:
            transformers_logging.enable_progress_bar()


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
