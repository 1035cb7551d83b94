"""Named adapters on the one base model.

An adapter is kept as its peft config plus its weights (a few MB for LoRA), not as a live wrapper:
``attach`` wraps the base model for use and ``detach`` takes the wrapper off again
(``PeftModel.unload`` restores the original modules without merging), so the base weights are
never changed and ``base`` is always the model as loaded. Full fine-tuning and gradual unfreezing
train a copy of the model, kept whole: that costs one more model's memory per adapter.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .errors import FtpeError, did_you_mean
from .scoped import quiet_library_notices
from .templates import ExampleTemplate

_META = "ftpe_adapter.json"


@dataclass
class Adapter:
    name: str
    method: str
    template: ExampleTemplate | None
    chat: bool
    label_set: list[str]
    input_col: str = "text"
    trainable_params: int = 0
    train_seconds: float = 0.0
    peft_config: Any = None
    state: dict[str, torch.Tensor] | None = None
    model: Any = None
    best_metric: float | None = None
    interrupted_at: int | None = None
    steps: int = 0
    history: list[dict] = field(default_factory=list, repr=False)

    def summary(self) -> dict:
        return {"name": self.name, "method": self.method, "trainable_params": self.trainable_params,
                "train_seconds": round(self.train_seconds, 1), "steps": self.steps,
                "best_val_accuracy": self.best_metric,
                "status": f"interrupted at step {self.interrupted_at}" if self.interrupted_at is not None else "done"}

    def metadata(self) -> dict:
        template = self.template
        return {"method": self.method, "template": template.template if template else None,
                "instructions": template.instructions if template else "", "chat": self.chat,
                "label_set": self.label_set, "input_col": self.input_col, "trainable_params": self.trainable_params,
                "train_seconds": self.train_seconds, "best_metric": self.best_metric, "steps": self.steps}


def is_prompt_learning(model) -> bool:
    config = getattr(model, "active_peft_config", None)
    return bool(config is not None and getattr(config, "is_prompt_learning", False))


def attach(base_model, adapter: Adapter):
    """The model to use for ``adapter``: a fresh peft wrapper around the base, or the trained copy."""
    if adapter.model is not None:  # full fine-tuning and unfreezing keep a trained copy
        return adapter.model
    from peft import get_peft_model, set_peft_model_state_dict

    with quiet_library_notices():
        wrapper = get_peft_model(base_model, copy.deepcopy(adapter.peft_config))
        set_peft_model_state_dict(wrapper, adapter.state)
    wrapper.eval()
    return wrapper


def detach(model, base_model):
    """Take a peft wrapper off the base model (modules restored, nothing merged); returns the base."""
    from peft import PeftModel

    if isinstance(model, PeftModel) and not is_prompt_learning(model):
        with quiet_library_notices():
            model.unload()
    return base_model


def peft_state(wrapper) -> dict[str, torch.Tensor]:
    from peft import get_peft_model_state_dict

    return {key: value.detach().clone() for key, value in get_peft_model_state_dict(wrapper).items()}


def save_adapter(adapter: Adapter, path: str | os.PathLike) -> Path:
    """Write the adapter (peft format, or a transformers folder for a full copy) atomically."""
    target = Path(path).expanduser().resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        if adapter.model is not None:
            adapter.model.save_pretrained(staging)
        else:
            from safetensors.torch import save_file

            adapter.peft_config.save_pretrained(staging)
            save_file({k: v.contiguous() for k, v in adapter.state.items()}, staging / "adapter_model.safetensors")
        (staging / _META).write_text(json.dumps(adapter.metadata(), indent=2))
        if target.exists():
            backup = target.with_name(f".{target.name}.old")
            os.replace(target, backup)
            os.replace(staging, target)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def load_adapter(path: str | os.PathLike, name: str, device: str) -> Adapter:
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise FtpeError(f"No adapter folder at {folder}.")
    meta = json.loads((folder / _META).read_text()) if (folder / _META).is_file() else {}
    template = ExampleTemplate(meta["template"], meta.get("instructions", "")) if meta.get("template") else None
    common = {"name": name, "template": template, "chat": meta.get("chat", False),
              "label_set": meta.get("label_set", []), "input_col": meta.get("input_col", "text"),
              "trainable_params": meta.get("trainable_params", 0), "train_seconds": meta.get("train_seconds", 0.0),
              "best_metric": meta.get("best_metric"), "steps": meta.get("steps", 0)}
    if (folder / "adapter_config.json").is_file():
        from peft import PeftConfig
        from safetensors.torch import load_file

        config = PeftConfig.from_pretrained(str(folder))
        weights = folder / "adapter_model.safetensors"
        if not weights.is_file():
            raise FtpeError(f"{folder} has no adapter_model.safetensors (only safetensors adapters are loaded).")
        method = meta.get("method") or {"LORA": "lora", "IA3": "ia3", "PROMPT_TUNING": "prompt-tuning"}.get(
            str(config.peft_type.value if hasattr(config.peft_type, "value") else config.peft_type), "lora")
        config.inference_mode = True
        return Adapter(method=method, peft_config=config, state=load_file(str(weights), device=device), **common)
    if (folder / "config.json").is_file():
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(str(folder), use_safetensors=True).to(device).eval()
        return Adapter(method=meta.get("method", "full"), model=model, **common)
    raise FtpeError(f"{folder} holds neither a peft adapter (adapter_config.json) nor a model (config.json).")


class AdapterRegistry(Mapping):
    """The named adapters of one loaded base model, and which one is active.

    ``model`` is what every call should run: the base as loaded, or the active adapter attached to
    it. Switching detaches the previous wrapper first, so at most one adapter is ever in the base.
    """

    def __init__(self, base: Any) -> None:
        self.base = base  # the LoadedModel whose .model the adapters attach to
        self._adapters: dict[str, Adapter] = {}
        self.active: str | None = None
        self._active_model = None

    def __getitem__(self, name: str) -> Adapter:
        return self._adapters[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._adapters)

    def __len__(self) -> int:
        return len(self._adapters)

    @property
    def model(self):
        return self._active_model if self.active is not None else self.base.model

    def require(self, name: str) -> Adapter:
        """The adapter ``name``, or a one-line error naming the adapters there are."""
        if name not in self._adapters:
            known = list(self._adapters)
            raise FtpeError(f"No adapter named {name!r}.{did_you_mean(name, known)} "
                            + (f"Adapters: {', '.join(known)}." if known else "Train one with %%finetune --name NAME."))
        return self._adapters[name]

    def newest(self) -> Adapter | None:
        return list(self._adapters.values())[-1] if self._adapters else None

    def use(self, name: str) -> None:
        """Make adapter ``name`` (or ``base``) the model of every later call."""
        adapter = None if name == "base" else self.require(name)
        if self.active == (None if adapter is None else name):
            return
        if self.active is not None:
            detach(self._active_model, self.base.model)
        self._active_model = None if adapter is None else attach(self.base.model, adapter)
        self.active = None if adapter is None else name

    @contextmanager
    def using(self, name: str) -> Iterator[None]:
        """Run a block with adapter ``name`` (or ``base``) active, then switch back."""
        previous = self.active or "base"
        self.use(name)
        try:
            yield
        finally:
            self.use(previous)

    def add(self, adapter: Adapter) -> None:
        if adapter.name == "base":
            raise FtpeError("'base' names the model without adapters; choose another --name.")
        if self.active == adapter.name:
            self.use("base")
        self._adapters[adapter.name] = adapter

    def delete(self, name: str) -> None:
        self.require(name)
        if self.active == name:
            self.use("base")
        del self._adapters[name]

    def clear(self) -> None:
        """Forget every adapter (the base they belong to is going away); nothing is detached from it."""
        self._adapters.clear()
        self.active, self._active_model = None, None

    def rows(self) -> list[dict]:
        return [{**adapter.summary(), "active": name == self.active} for name, adapter in self._adapters.items()]
