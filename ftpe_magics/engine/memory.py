"""Memory figures for ``%ftpe status`` and the training view."""

from __future__ import annotations

import gc
import os
import resource

import torch

from .errors import FtpeError


def process_rss_bytes() -> int:
    """Resident memory of this process now (Linux), or its peak where /proc is missing."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def memory_summary(device: str) -> dict[str, int]:
    if device.startswith("cuda") and torch.cuda.is_available():
        return {"gpu_allocated": torch.cuda.memory_allocated(), "gpu_reserved": torch.cuda.memory_reserved()}
    return {"process_rss": process_rss_bytes()}


def human_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(count) < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GiB"


def free_accelerator_memory() -> None:
    """Drop Python references' memory and, on a GPU, return the allocator's cached blocks."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def out_of_memory(what: str, fix: str) -> FtpeError:
    """The one message for a CUDA out-of-memory error: memory is freed first, then the user is told how to retry."""
    free_accelerator_memory()
    return FtpeError(f"CUDA out of memory while {what}. Retry with {fix}; the model is still loaded.")
