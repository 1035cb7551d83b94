"""The fine-tuning methods: a registry from a method's name to how its trainable model is built.

peft methods (LoRA, IA3, prompt tuning) wrap the shared base with a small set of new weights; the
``copy`` methods (full fine-tuning, gradual unfreezing) train a deep copy, so the base as loaded
is never changed. A new method is one entry in ``METHODS``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import FtpeError

# The builders read a FinetuneOptions; the type is not imported here, since the options declare their method
# choices from this registry (an import the other way would be a cycle).
FinetuneOptions = Any


@dataclass(frozen=True)
class Method:
    name: str
    default_lr: float
    trains_copy: bool
    build: Callable[[Any, FinetuneOptions, str], Any] | None  # (base, options, tokenizer location) -> model
    classifier: bool = False  # predicts with a classification head (argmax) instead of generating the label


def _targets(options: FinetuneOptions) -> list[str] | str | None:
    if not options.target_modules:
        return None
    if options.target_modules == "all-linear":
        return "all-linear"
    return [name.strip() for name in options.target_modules.split(",")]


def lora_on(base, options: FinetuneOptions, location: str = ""):
    """LoRA layers injected into ``base`` (a peft wrapper around it), from ``--rank``, ``--alpha``, ``--dropout``."""
    from peft import LoraConfig, TaskType, get_peft_model

    config = LoraConfig(task_type=TaskType.CAUSAL_LM, r=options.rank, lora_alpha=options.alpha,
                        lora_dropout=options.dropout, target_modules=_targets(options))
    return get_peft_model(base, config)


def _ia3(base, options: FinetuneOptions, location: str):
    from peft import IA3Config, TaskType, get_peft_model

    targets = _targets(options)
    config = IA3Config(task_type=TaskType.CAUSAL_LM, target_modules=targets,
                       feedforward_modules=[] if targets else None)
    return get_peft_model(base, config)


def _prompt_tuning(base, options: FinetuneOptions, location: str):
    from peft import PromptTuningConfig, PromptTuningInit, TaskType, get_peft_model

    init_text = options.init_text
    config = PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=options.virtual_tokens,
                                prompt_tuning_init=PromptTuningInit.TEXT if init_text else PromptTuningInit.RANDOM,
                                prompt_tuning_init_text=init_text, tokenizer_name_or_path=location)
    return get_peft_model(base, config)


def _copy(base, options: FinetuneOptions, location: str):
    """A trainable copy; over a bf16 base on a CPU, an fp32 one (bf16 weights would lose most of each small
    update: the usual recipe trains fp32 weights, as peft keeps adapter weights fp32 over a bf16 base)."""
    model = copy.deepcopy(base)
    if model.dtype == torch.bfloat16 and model.device.type == "cpu":
        model = model.float()
    model.requires_grad_(True)
    return model


METHODS: dict[str, Method] = {method.name: method for method in (
    Method("lora", 1e-3, False, lora_on),
    Method("full", 3e-5, True, _copy),
    Method("prompt-tuning", 3e-2, False, _prompt_tuning),
    Method("ia3", 3e-3, False, _ia3),
    Method("unfreeze", 5e-5, True, _copy),
    Method("probe", 0.0, False, None, classifier=True),  # logistic regression by L-BFGS: no learning rate
    Method("head", 1e-3, False, None, classifier=True),
)}
COPY_METHODS = tuple(name for name, method in METHODS.items() if method.trains_copy)


def is_classifier(options: FinetuneOptions) -> bool:
    """Whether a run trains a classification head: probe, head, or gradual unfreezing with ``--head``."""
    return METHODS[options.method].classifier or (options.method == "unfreeze" and options.head)


def default_lr(method: str) -> float:
    return METHODS[method].default_lr


def check_targets(base, options: FinetuneOptions) -> None:
    """``--target-modules`` must name modules the model has: checked before the model is touched."""
    targets = _targets(options)
    if not isinstance(targets, list) or options.method not in ("lora", "ia3"):
        return
    names = [name for name, _ in base.named_modules()]
    missing = [t for t in targets if not any(name == t or name.endswith("." + t) for name in names)]
    if missing:

        linear = sorted({name.rsplit(".", 1)[-1] for name, module in base.named_modules()
                         if isinstance(module, torch.nn.Linear)})
        raise FtpeError(f"--target-modules: the model has no module named {missing[0]!r}. Its linear layers: "
                        f"{', '.join(linear)} (or use all-linear).")


def build_trainable(base, options: FinetuneOptions, location: str):
    """The model that training updates: a peft wrapper around ``base``, or a copy of it."""
    return METHODS[options.method].build(base, options, location)
