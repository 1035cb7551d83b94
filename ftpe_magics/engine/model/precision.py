"""What ``--dtype auto`` loads and trains in, and why: the choice ``%ftpe status`` states.

On a GPU, bf16 for both. On a CPU that computes bf16 natively (AVX512-BF16 or AMX; x86 Linux says so in
``/proc/cpuinfo``), bf16 weights run the default model's forward and backward passes 2-3x faster than fp32
(``benchmarks/bench_bf16.py``), but they move label log-probabilities enough to flip close predictions. So
``auto`` keeps the session's weights in fp32 there (every score and generation as exact as before) and trains
on a bf16 copy of the base, made once per load: LoRA, IA3, prompt tuning, the probe and the head train 2-3x
faster, their own weights and optimizer state in fp32 (peft keeps adapter weights fp32 over a bf16 base), and
the adapter they make is scored on the fp32 base. ``SCORE_BF16_ON_NATIVE_CPU`` turns the scoring side to bf16
too; the README gives the figures behind both choices. Methods that train a copy of every weight (full,
unfreeze) train an fp32 copy. Anywhere else ``auto`` is fp32; ``--dtype X`` is X for both.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import torch

TRAIN_BF16_ON_NATIVE_CPU = True
SCORE_BF16_ON_NATIVE_CPU = False


@dataclass(frozen=True)
class Precision:
    weights: torch.dtype  # the session's model: every score, generation and embedding
    training: torch.dtype  # the base that peft methods, the probe and the head train on (a copy when different)
    reason: str


@functools.cache
def native_bf16_cpu() -> str | None:
    """The name of this CPU's native bf16 instructions, or None (elsewhere than x86 Linux: None)."""
    info = Path("/proc/cpuinfo")
    flags = set(info.read_text().split()) if info.is_file() else set()
    names = [name for flag, name in (("amx_bf16", "AMX"), ("avx512_bf16", "AVX512-BF16")) if flag in flags]
    return " and ".join(names) or None


def auto_precision(device: str) -> Precision:
    """What ``auto`` means on ``device``, and the reason, as ``%ftpe status`` says it."""
    if device == "cuda":
        return Precision(torch.bfloat16, torch.bfloat16, "auto: bf16 on a GPU")
    native = native_bf16_cpu()
    if not native:
        return Precision(torch.float32, torch.float32, "auto: fp32 on this CPU (no native bf16)")
    weights = torch.bfloat16 if SCORE_BF16_ON_NATIVE_CPU else torch.float32
    training = torch.bfloat16 if TRAIN_BF16_ON_NATIVE_CPU else torch.float32
    said = {torch.float32: "fp32", torch.bfloat16: "bf16"}
    return Precision(weights, training, f"auto: this CPU computes bf16 natively ({native}): scoring in "
                                        f"{said[weights]}, training on a {said[training]} base; --dtype fp32 "
                                        "for both")
