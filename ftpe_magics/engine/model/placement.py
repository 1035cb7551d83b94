"""Where and how the base weights sit: one device, spread over several (``--device-map``), or quantised
to 4 or 8 bits (``--quantize``, bitsandbytes).

Quantised and device-mapped models are placed by ``from_pretrained`` itself (accelerate's big-model
loading), so they are never moved with ``.to()`` afterwards. What k-bit training needs (norms and
embeddings kept in fp32, every weight frozen) is done once here, at load: a fine-tune then only adds
its adapter, and the base model's logits are the same before and after it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import FtpeError

QUANTIZE = ("4bit", "8bit")
DEVICE_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")
_MEMORY = re.compile(r"^\s*(\d+|cpu|disk)\s*=\s*(\d+(?:\.\d+)?\s*[KMGT]i?B)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Placement:
    """How ``%ftpe load`` places the weights; the default is the whole model on one device."""

    quantize: str | None = None
    device_map: str | None = None
    max_memory: str | None = None

    def __post_init__(self) -> None:
        if self.quantize is not None and self.quantize not in QUANTIZE:
            raise FtpeError(f"--quantize must be one of {', '.join(QUANTIZE)}, not {self.quantize!r}.")
        if self.device_map is not None and self.device_map not in DEVICE_MAPS:
            raise FtpeError(f"--device-map must be one of {', '.join(DEVICE_MAPS)}, not {self.device_map!r}.")
        if self.max_memory is not None and self.device_map is None:
            raise FtpeError("--max-memory caps each device of a --device-map; add --device-map auto.")
        parse_max_memory(self.max_memory)

    @property
    def placed_by_loader(self) -> bool:
        """Whether ``from_pretrained`` puts the weights where they go (never ``.to()`` them afterwards)."""
        return self.quantize is not None or self.device_map is not None

    def describe(self) -> str:
        parts = [f"{self.quantize} (bitsandbytes)"] if self.quantize else []
        if self.device_map:
            parts.append(f"device map {self.device_map}" + (f" ({self.max_memory})" if self.max_memory else ""))
        return ", ".join(parts) or "whole model on one device"

    def loader_kwargs(self, device: str) -> dict[str, Any]:
        """What ``from_pretrained`` needs for this placement, beyond the dtype."""
        kwargs: dict[str, Any] = {}
        if self.quantize:
            kwargs["quantization_config"] = quantization_config(self.quantize)
            kwargs["device_map"] = self.device_map or {"": device if device != "cuda" else 0}
        elif self.device_map:
            kwargs["device_map"] = self.device_map
        if self.max_memory:
            kwargs["max_memory"] = parse_max_memory(self.max_memory)
        return kwargs

    def as_dict(self) -> dict[str, str]:
        return {key: value for key, value in vars(self).items() if value is not None}


def parse_max_memory(text: str | None) -> dict[int | str, str] | None:
    """``0=20GiB,1=20GiB,cpu=64GiB`` to accelerate's ``max_memory`` mapping."""
    if not text:
        return None
    limits: dict[int | str, str] = {}
    for part in text.split(","):
        match = _MEMORY.match(part)
        if match is None:
            raise FtpeError(f"--max-memory: cannot read {part.strip()!r}; write DEVICE=SIZE pairs, e.g. "
                            "0=20GiB,1=20GiB,cpu=64GiB.")
        device, size = match.groups()
        limits[int(device) if device.isdigit() else device.lower()] = size.replace(" ", "")
    return limits


def quantization_config(quantize: str):
    """NF4 with double quantisation and bf16 compute for 4-bit (the QLoRA recipe); LLM.int8() for 8-bit."""
    try:
        import bitsandbytes  # noqa: F401 - imported only to say what is missing, in one line
    except ImportError:
        raise FtpeError("--quantize needs bitsandbytes: pip install 'ftpe_magics[kbit]'.") from None
    from transformers import BitsAndBytesConfig

    if quantize == "4bit":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                  bnb_4bit_compute_dtype=torch.bfloat16)
    return BitsAndBytesConfig(load_in_8bit=True)


def prepare_placed(model, placement: Placement) -> None:
    """Once, at load: a k-bit model gets what k-bit training needs (peft's preparation, without gradient
    checkpointing, which would change how every later forward pass runs); every weight stays frozen."""
    if not placement.quantize:
        return
    from peft import prepare_model_for_kbit_training

    prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    model.requires_grad_(False)
    for module in model.modules():
        # bitsandbytes repacks a 4-bit weight for its AVX512-bf16 CPU kernel at the first inference call and
        # unpacks it at every state_dict(); the two kernels round differently, so the same base would give other
        # logits depending on what ran before. One kernel (the portable one) keeps the base's logits fixed.
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


def is_quantized(model) -> bool:
    return bool(getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False))


def model_device(model) -> str:
    """Where inputs go: the device of the input embeddings (the first device of a device map)."""
    try:
        return str(model.get_input_embeddings().weight.device)
    except AttributeError:
        return str(model.device)


def visible_devices(used: str | None) -> str:
    """``%ftpe status``: how many accelerators this process sees, and which one the session uses."""
    if not torch.cuda.is_available():
        return "cpu only (no GPU visible)"
    count = torch.cuda.device_count()
    names = sorted({torch.cuda.get_device_name(index) for index in range(count)})
    return f"{count} GPU(s) ({', '.join(names)}); the session uses {used or 'none yet'}"
