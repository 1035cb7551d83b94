"""Named adapters on the one base model.

An adapter is kept as its peft config plus its weights (a few MB for LoRA), not as a live wrapper:
``attach`` wraps the base model for use and ``detach`` takes the wrapper off again
(``PeftModel.unload`` restores the original modules without merging), so the base weights are
never changed and ``base`` is always the model as loaded. Full fine-tuning and gradual unfreezing
train a copy of the model, kept whole: that costs one more model's memory per adapter.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import FtpeError, did_you_mean
from ..model.scoped import quiet_library_notices
from ..prompting.templates import ExampleTemplate


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
    train_tokens: int = 0        # real (unpadded) tokens trained on: the training's cost in FLOPs
    peft_config: Any = None
    state: dict[str, torch.Tensor] | None = None
    model: Any = None
    best_metric: float | None = None
    interrupted_at: int | None = None
    steps: int = 0
    history: list[dict] = field(default_factory=list, repr=False)
    head: Any = None             # a ClassifierHead (probe, head): predictions by argmax over its classes
    base_model_id: str = ""      # the model it was trained on: its hub id or name, never a path of this machine
    base_fingerprint: str = ""   # LoadedModel.fingerprint of that model, checked when the adapter is loaded
    search_log: list[dict] | None = field(default=None, repr=False)  # --search: every trial, the chosen one marked
    fingerprint: str = field(default="", repr=False, compare=False)  # of the weights: computed once, on first use

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
                "train_seconds": self.train_seconds, "train_tokens": self.train_tokens,
                "best_metric": self.best_metric, "steps": self.steps,
                "base_model": self.base_model_id, "base_fingerprint": self.base_fingerprint,
                "head_pool": self.head.pool if self.head is not None else None}


def is_prompt_learning(model) -> bool:
    config = getattr(model, "active_peft_config", None)
    return bool(config is not None and getattr(config, "is_prompt_learning", False))


def attach(base_model, adapter: Adapter):
    """The model to use for ``adapter``: a fresh peft wrapper around the base, or the trained copy."""
    if adapter.model is not None:  # full fine-tuning and unfreezing keep a trained copy
        return adapter.model
    if adapter.peft_config is None:  # a probe or a head on the frozen body: the base as it is
        return base_model
    from peft import get_peft_model, set_peft_model_state_dict

    config = copy.deepcopy(adapter.peft_config)
    config.base_model_name_or_path = None  # which base it belongs to is checked by fingerprint, not by this name
    with quiet_library_notices():
        wrapper = get_peft_model(base_model, config)
        try:
            set_peft_model_state_dict(wrapper, adapter.state)
        except BaseException:  # weights of another shape: take the fresh layers off the base again
            detach(wrapper, base_model)
            raise
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


class AdapterRegistry(Mapping):
    """The named adapters of one loaded base model, and which one is active.

    ``model`` is what every call should run: the base as loaded, or the active adapter attached to
    it. Switching detaches the previous wrapper first, so at most one adapter is ever in the base.
    """

    def __init__(self, base: Any, loader: Callable[[str], Adapter | None] | None = None,
                 describer: Callable[[str], Adapter | None] | None = None) -> None:
        self.base = base  # the LoadedModel whose .model the adapters attach to
        self.loader = loader  # finds an adapter the session does not hold (the run store's), or None
        self.describer = describer  # the same, described without its weights (for a cache key), or None
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
        """The adapter ``name`` (read from the loader on first use), or a one-line error naming those there are."""
        if name not in self._adapters and self.loader is not None and name != "base":
            found = self.loader(name)
            if found is not None:
                self._adapters[name] = found
        if name not in self._adapters:
            known = list(self._adapters)
            raise FtpeError(f"No adapter named {name!r}.{did_you_mean(name, known)} "
                            + (f"Adapters: {', '.join(known)}." if known else "Train one with %%finetune --name NAME."))
        return self._adapters[name]

    def reference(self, name: str) -> Adapter:
        """Adapter ``name`` as far as a cache key needs it: the session's own, else its description in the store
        (no weights read, no peft imported), else read as :meth:`require` reads it."""
        if name not in self._adapters and self.describer is not None and name != "base":
            described = self.describer(name)
            if described is not None:
                return described
        return self.require(name)

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
