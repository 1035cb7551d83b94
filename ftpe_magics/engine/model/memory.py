"""Memory figures for ``%ftpe status`` and the training view."""

from __future__ import annotations

import gc
import os
import resource
import threading

import torch

from ..errors import FtpeError


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


class PeakMemory:
    """The peak memory while a block runs (``bytes`` after it): on a GPU, the allocator's own peak; on CPU, the
    process's resident memory sampled every 10 ms by a thread, because the OS keeps only a lifetime peak (which
    a bigger earlier condition would have set). Sampling can miss a spike shorter than 10 ms; that is the
    price of not needing a profiler."""

    def __init__(self, device: str | None, interval: float = 0.01) -> None:
        self.cuda = bool(device and device.startswith("cuda") and torch.cuda.is_available())
        self.device, self.interval = device, interval
        self.bytes = 0
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._done.wait(self.interval):
            self.bytes = max(self.bytes, process_rss_bytes())

    def __enter__(self) -> PeakMemory:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self.bytes = process_rss_bytes()
            self._thread = threading.Thread(target=self._sample, name="ftpe-peak-memory", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> bool:
        if self.cuda:
            self.bytes = int(torch.cuda.max_memory_allocated(self.device))
        else:
            self._done.set()
            self._thread.join()
            self.bytes = max(self.bytes, process_rss_bytes())
        return False

