"""``%ftpe load``'s options, declared once as fields: the magic's arguments are built from them, and
:meth:`Session.load` takes them as a :class:`LoadOptions` (or as keywords)."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import DEVICES, DTYPES
from ..options import check_ranges, option
from .placement import DEVICE_MAPS, QUANTIZE


@dataclass
class LoadOptions:
    """Where and how the model is loaded; a field left at ``None`` takes its ``Ftpe`` setting."""

    device: str | None = option(None, "Where to load the model (default: Ftpe.device).", choices=DEVICES,
                                config="device")
    dtype: str | None = option(None, "Weight dtype (default: Ftpe.dtype).", choices=DTYPES, config="dtype")
    quantize: str | None = option(None, "For load: 4-bit (NF4, double quantisation, bf16 compute) or 8-bit weights "
                                        "via bitsandbytes; %%%%finetune --method lora on it is QLoRA.",
                                  choices=QUANTIZE)
    device_map: str | None = option(None, "For load: spread the model over the GPUs (and CPU) that fit it "
                                          "(accelerate's big-model loading).", choices=DEVICE_MAPS)
    max_memory: str | None = option(None, "For load with --device-map: a cap per device, e.g. "
                                          "0=20GiB,1=20GiB,cpu=64GiB.")
    trust_remote_code: bool = option(False, "Allow model code from the hub to run (off unless you trust the "
                                            "source).")

    def __post_init__(self) -> None:
        check_ranges(self)
