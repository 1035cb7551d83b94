"""``%%finetune --search N``: N trials of a method's settings, chosen by Optuna, judged on validation only.

The loop is Optuna's ask-and-tell interface rather than ``study.optimize``, because each trial is a whole
training run the engine owns: it must keep the best adapter, stop the running trial when the budget is spent
(``study.optimize``'s timeout only checks between trials), and treat the stop button as "end the search, keep
the best so far". TPE samples the settings; the median pruner ends a trial whose validation accuracy at an
evaluation is below the median of earlier trials at that step. The first trial is the settings as given, so
the search can only find something better than what the user would have trained.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ..errors import FtpeError
from .observers import TrainingObserver, TrainingPlan
from .space import Dimension, search_space, starting_point


def optuna_module():
    try:
        import optuna
    except ImportError:  # a core dependency, but an environment can still lack it
        raise FtpeError("--search needs Optuna: pip install optuna.") from None
    return optuna


@contextmanager
def quiet_optuna(optuna) -> Any:
    """Optuna logs every trial at INFO; the trials table says the same once."""
    logger = logging.getLogger("optuna")
    previous = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(previous)


class TrialWatcher(TrainingObserver):
    """Reports each validation to the trial (pruning it when the pruner says so) and ends it when the budget
    runs out (as the stop button would: at the next step, the adapter kept as of that step)."""

    def __init__(self, trial: Any, deadline: float | None, pruned: type[Exception]) -> None:
        self.trial, self.deadline, self.pruned = trial, deadline, pruned
        self.total_steps = 0
        self.out_of_time = False
        self.evaluations: list[tuple[int, float]] = []

    def start(self, plan: TrainingPlan) -> None:
        self.total_steps = plan.total_steps

    def step(self, step: int, tokens: int) -> None:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self.out_of_time = True
            raise KeyboardInterrupt

    def evaluation(self, record: dict[str, Any]) -> None:
        score = record.get("eval_accuracy", -record.get("eval_loss", 0.0))
        step = int(record["step"])
        self.evaluations.append((step, score))
        self.trial.report(score, step)
        if step < self.total_steps and self.trial.should_prune():  # the last validation is the result: never pruned
            raise self.pruned()


@dataclass
class SearchOutcome:
    """The best adapter and one row per trial (settings, validation accuracy, state, steps, seconds)."""

    best: Any
    trials: list[dict[str, Any]]
    space: list[Dimension]


def _row(number: int, params: dict, watcher: TrialWatcher, state: str, adapter: Any, seconds: float) -> dict:
    value = adapter.best_metric if adapter is not None else (max(s for _, s in watcher.evaluations)
                                                            if watcher.evaluations else None)
    return {"trial": number, **params, "val_accuracy": value, "state": state,
            "steps": adapter.steps if adapter is not None else (watcher.evaluations[-1][0] if watcher.evaluations
                                                                else 0),
            "seconds": seconds, "evaluations": list(watcher.evaluations)}


def samplers(optuna, trials: int, seed: int) -> tuple[Any, Any]:
    # TPE needs a few random trials to model from; with a handful of trials, half of them
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(2, min(10, trials // 2)))
    return sampler, optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)


def search(train_trial: Callable[[Any, list[TrainingObserver]], Any], options: Any, trials: int,
           budget_minutes: float | None, log: Callable[[str], None]) -> SearchOutcome:
    """Run up to ``trials`` trials of ``options`` varied over its space; ``train_trial(options, observers)`` trains
    one and returns its adapter (with ``best_metric``, the validation accuracy)."""
    optuna = optuna_module()
    space = search_space(options)
    deadline = time.monotonic() + 60 * budget_minutes if budget_minutes else None
    with quiet_optuna(optuna):
        sampler, pruner = samplers(optuna, trials, options.seed)
        study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)
        study.enqueue_trial(starting_point(options, space))
        rows: list[dict] = []
        best = fallback = None  # (trial number, adapter): the best finished trial; a stopped one if none finished
        for number in range(trials):
            if deadline is not None and time.monotonic() >= deadline:
                log(f"Search: the budget of {budget_minutes:g} min is spent after {number} trial(s).")
                break
            trial = study.ask()
            params = {dimension.name: dimension.suggest(trial) for dimension in space}
            adapter, row, ended = one_trial(optuna, study, trial, train_trial, options, params, deadline, number)
            rows.append(row)
            if row["state"] == "complete" and (best is None or row["val_accuracy"] > best[1].best_metric):
                best = (number, adapter)
            if adapter is not None and row["state"] != "complete":
                fallback = (number, adapter)
            if ended:
                break
    return outcome(best or fallback, rows, space)


def one_trial(optuna, study, trial, train_trial, options, params: dict, deadline: float | None,
               number: int) -> tuple[Any, dict, bool]:
    """Train one trial and tell the study; True as the last item when the search must end (stop, budget)."""
    watcher = TrialWatcher(trial, deadline, optuna.TrialPruned)
    trial_options = dataclasses.replace(options, **params, search=None, space=None, budget_minutes=None, cv=1)
    started = time.perf_counter()
    try:
        adapter = train_trial(trial_options, [watcher])
    except optuna.TrialPruned:
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        return None, _row(number, params, watcher, "pruned", None, time.perf_counter() - started), False
    except KeyboardInterrupt:  # stopped between training steps (tokenising, validating): the search ends
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return None, _row(number, params, watcher, "stopped", None, time.perf_counter() - started), True
    seconds = time.perf_counter() - started
    if adapter.interrupted_at is not None:  # the budget or the stop button: not a finished trial
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        state = "stopped (budget)" if watcher.out_of_time else "stopped"
        return adapter, _row(number, params, watcher, state, adapter, seconds), True
    if adapter.best_metric is None:
        raise FtpeError("--search judges trials on validation accuracy, and this run had no validation; give "
                        "--eval VAR or --val-split.")
    study.tell(trial, adapter.best_metric)
    return adapter, _row(number, params, watcher, "complete", adapter, seconds), False


def outcome(best: tuple[int, Any] | None, rows: list[dict], space: list[Dimension]) -> SearchOutcome:
    if best is None:
        raise FtpeError("The search ended before any trial finished (pruned or stopped); nothing was kept. "
                        "Give it more --budget-minutes, or more --search trials.")
    number, adapter = best
    for row in rows:
        row["best"] = row["trial"] == number
    adapter.search_log = rows
    return SearchOutcome(adapter, rows, space)
