"""``Trainer`` callbacks: gradual unfreezing, validation with best-state tracking, reporting to
observers, and stopping at a step boundary when the kernel's stop button is pressed."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import torch
from transformers import TrainerCallback

from ..errors import FtpeError
from .distributed import any_rank, summed
from .observers import TrainingObserver
from .validation import ValidationMetric, ValidationSchedule, ValidationScore


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
    """Validation (sized to the run, see :mod:`.validation`), best-state tracking, early stopping and stopping at
    a step boundary."""

    def __init__(self, observer: TrainingObserver, metric: ValidationMetric | None, patience: int | None,
                 snapshot: Callable[[], dict], stop_flag: threading.Event,
                 current_adapter: Callable[[], Any] | None = None, stop_requested: Callable[[], bool] | None = None,
                 schedule: ValidationSchedule | None = None, positions: list[int] | None = None,
                 restore: Callable[[Any], None] | None = None) -> None:
        self.observer, self.metric, self.patience = observer, metric, patience
        self.snapshot, self.stop_flag, self.current_adapter = snapshot, stop_flag, current_adapter
        self.stop_requested, self.schedule, self.positions, self.restore = stop_requested, schedule, positions, restore
        self.best: float | None = None
        self._best_key: tuple[float, float] | None = None
        self.best_state = None
        self._best_step = 0
        self.bad_evals = 0
        self.finished_steps = 0
        self.evaluating = False  # a validation is running: the stop button aborts it at once
        self._clock = time.perf_counter()
        self.checks = _Checks(self)

    def on_train_begin(self, args, state, control, **kwargs):
        self._clock = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.finished_steps = state.global_step
        if self.schedule is not None:
            self.schedule.train_seconds += time.perf_counter() - self._clock
        return control

    def check_if_due(self, state, control, model) -> None:
        """After every other callback's step end (``checks``, last in the list): stop, or validate when due."""
        wish = self.stop_flag.is_set() or bool(self.stop_requested and self.stop_requested())
        if any_rank(wish):  # stop now (all ranks at this step): a validation due at it would only delay it
            self.stop_flag.set()
            control.should_training_stop = True
        elif self.metric is not None and self.schedule is not None and any_rank(self.schedule.due(state.global_step)):
            started = time.perf_counter()
            self.consider(state.global_step, self.score(model, self.positions))
            self.schedule.spent(time.perf_counter() - started)
            if self.patience and self.bad_evals >= self.patience:  # the same on every rank: one score for all
                control.should_training_stop = True
        self._clock = time.perf_counter()

    def on_train_end(self, args, state, control, **kwargs):
        """The whole split scores the final state, and the best state of the checks when that was another: the
        better of the two is kept (ties: the final one)."""
        if self.metric is None or self.stop_flag.is_set():
            return control
        model = kwargs["model"]
        final = self.score(model, None)
        self._report(self.finished_steps, final)
        if self.positions is None or self.best_state is None or self._best_step == self.finished_steps:
            self._reset_best()  # the checks scored a subsample: only whole-split scores compete now
            self.consider(self.finished_steps, final, record=False)
            return control
        final_state = self.snapshot()
        self.restore(self.best_state)
        best = self.score(model, None)
        if (best.accuracy, -best.loss) > (final.accuracy, -final.loss):
            self._best_key, self.best = (best.accuracy, -best.loss), best.accuracy
        else:
            self.restore(final_state)
            self._reset_best()
            self.consider(self.finished_steps, final, record=False)
        return control

    def _report(self, step: int, score: ValidationScore) -> None:
        self.observer.evaluation({"step": step, "eval_loss": score.loss, "eval_accuracy": score.accuracy,
                                  "eval_examples": score.examples})

    def _reset_best(self) -> None:
        if self.positions is not None:
            self._best_key = None

    def score(self, model, positions: list[int] | None) -> ValidationScore:
        was_training = model.training
        model.eval()
        self.evaluating = True
        try:
            return self.metric(model, positions)
        finally:
            self.evaluating = False
            model.train(was_training)

    def consider(self, step: int, score: ValidationScore, record: bool = True) -> None:
        """Report a validation and keep the state when it is the best so far; ties in accuracy go to the lower
        loss, then to the later step (>=): the state before any real update never wins a tie with a trained one."""
        if record:
            self._report(step, score)
        key = (score.accuracy, -score.loss)
        if self._best_key is None or key >= self._best_key:
            improved = self._best_key is None or key > self._best_key
            self._best_key, self.best, self.best_state, self._best_step = key, key[0], self.snapshot(), step
            self.bad_evals = 0 if improved else self.bad_evals + 1
            if self.current_adapter is not None:
                self.observer.improved(step, score.accuracy, self.current_adapter)
        else:
            self.bad_evals += 1


class _Checks(TrainerCallback):
    """The Supervisor's stop and validation at a step's end, after the observers saw the step: a stop asked
    there is honoured at that step, and skips the validation due at it."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor

    def on_step_end(self, args, state, control, **kwargs):
        self.supervisor.check_if_due(state, control, kwargs["model"])
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
