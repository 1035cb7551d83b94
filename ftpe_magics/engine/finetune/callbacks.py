"""``Trainer`` callbacks: gradual unfreezing, validation with best-state tracking, reporting to
observers, and stopping at a step boundary when the kernel's stop button is pressed."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any

import torch
from transformers import TrainerCallback

from ..errors import FtpeError
from .distributed import any_rank, summed
from .observers import TrainingObserver


def layer_groups(model, groups: int) -> list[list[torch.nn.Module]]:
    """The model's transformer blocks (its longest ModuleList) split into ``groups``, top group first."""
    lists = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList)]
    if not lists:
        raise FtpeError("--method unfreeze needs a model with a list of transformer layers.")
    layers = list(max(lists, key=len))
    groups = max(1, min(groups, len(layers)))
    size = -(-len(layers) // groups)
    chunks = [layers[i:i + size] for i in range(0, len(layers), size)]
    return list(reversed(chunks))


class Unfreeze(TrainerCallback):
    """Gradual unfreezing: the head and top group train first; one more group every N steps.

    Every parameter is in the optimizer from the start; frozen ones simply get no gradient, which
    AdamW skips, so unfreezing needs no new optimizer.
    """

    def __init__(self, model, groups: list[list[torch.nn.Module]], every: int) -> None:
        self.model, self.groups, self.every = model, groups, max(1, every)

    def _apply(self, open_groups: int) -> None:
        for index, group in enumerate(self.groups):
            for layer in group:
                layer.requires_grad_(index < open_groups)

    def on_train_begin(self, args, state, control, **kwargs):
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        for parameter in self.model.get_output_embeddings().parameters():
            parameter.requires_grad_(True)
        in_layers = set().union(*[set(layer.modules()) for group in self.groups for layer in group])
        for module in self.model.modules():  # final norm: the last non-layer module with weights named *norm
            if type(module).__name__.lower().endswith("norm") and module not in in_layers:
                module.requires_grad_(True)
        self._apply(1)

    def on_step_begin(self, args, state, control, **kwargs):
        self._apply(1 + state.global_step // self.every)


class Supervisor(TrainerCallback):
    """Validation accuracy, best-state tracking, early stopping and stopping at a step boundary."""

    def __init__(self, observer: TrainingObserver, task_metric: Callable[[Any], float] | None,
                 patience: int | None, snapshot: Callable[[], dict], stop_flag: threading.Event,
                 current_adapter: Callable[[], Any] | None = None,
                 stop_requested: Callable[[], bool] | None = None) -> None:
        self.observer, self.task_metric, self.patience = observer, task_metric, patience
        self.snapshot, self.stop_flag, self.current_adapter = snapshot, stop_flag, current_adapter
        self.stop_requested = stop_requested
        self.best: float | None = None
        self._best_key: tuple[float, float] | None = None
        self.best_state = None
        self.bad_evals = 0
        self.finished_steps = 0
        self.evaluating = False  # a validation is running: the stop button aborts it at once

    def on_step_end(self, args, state, control, **kwargs):
        self.finished_steps = state.global_step
        wish = self.stop_flag.is_set() or bool(self.stop_requested and self.stop_requested())
        if any_rank(wish):  # stop now (all ranks at this step): a validation scheduled for it would only delay it
            self.stop_flag.set()
            control.should_training_stop = True
            control.should_evaluate = False
        self.evaluating = bool(control.should_evaluate)
        return control

    def _validation_accuracy(self, model) -> float:
        was_training = model.training
        model.eval()
        try:
            return self.task_metric(model)
        finally:
            model.train(was_training)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        entry = {"step": state.global_step, "eval_loss": (metrics or {}).get("eval_loss")}
        score = self._validation_accuracy(kwargs["model"]) if self.task_metric is not None else None
        if score is not None:
            entry["eval_accuracy"] = score
        self.evaluating = False
        self.observer.evaluation({key: value for key, value in entry.items() if value is not None})
        loss = entry["eval_loss"] if entry["eval_loss"] is not None else float("inf")
        # ties in accuracy go to the lower validation loss, then to the later step (>=): the state before
        # any real update can never win a tie it shares with a trained one
        key = (score if score is not None else -loss, -loss)
        if self._best_key is None or key >= self._best_key:
            improved = self._best_key is None or key > self._best_key
            self._best_key, self.best, self.best_state = key, key[0], self.snapshot()
            self.bad_evals = 0 if improved else self.bad_evals + 1
            if self.current_adapter is not None:
                self.observer.improved(state.global_step, score, self.current_adapter)
        else:
            self.bad_evals += 1
        if self.patience and self.bad_evals >= self.patience:  # the same on every rank: one accuracy for all
            control.should_training_stop = True
        return control


class Reporter(TrainerCallback):
    """Passes steps and training logs to the observers."""

    def __init__(self, observer: TrainingObserver, collator: CountingCollator) -> None:
        self.observer, self.collator = observer, collator

    def on_step_end(self, args, state, control, **kwargs):
        self.observer.step(state.global_step, summed(self.collator.tokens))  # every rank's tokens

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = dict(logs or {})
        if "loss" in logs or "learning_rate" in logs:
            entry = {"step": state.global_step, "loss": logs.get("loss"),
                     "learning_rate": logs.get("learning_rate"), "epoch": logs.get("epoch")}
            self.observer.log({key: value for key, value in entry.items() if value is not None})


class CountingCollator:
    """Dynamic padding (transformers' collator) that also counts the real tokens it batches."""

    def __init__(self, collator) -> None:
        self.collator = collator
        self.tokens = 0

    def __call__(self, features):
        batch = self.collator(features)
        self.tokens += int(batch["attention_mask"].sum())
        return batch


class StopOnInterrupt:
    """While training, the kernel's stop button (SIGINT) asks for a stop at the next step boundary; during a
    validation it stops at once (the validation is dropped, the weights are as of the last step)."""

    def __init__(self, flag: threading.Event, supervisor: Supervisor) -> None:
        self.flag, self.supervisor = flag, supervisor
        self.previous = None

    def _on_interrupt(self, *_: Any) -> None:
        self.flag.set()
        if self.supervisor.evaluating:
            raise KeyboardInterrupt

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._on_interrupt)
        return self

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        return False
