"""``%%finetune``: train a named adapter on a template filled from a training set, on the bare base (the adapter
active before is active after), in the kernel or in ``torchrun`` workers; ``--search`` trains trials and keeps the
best by validation accuracy. The adapter is kept on disk as it trains when the run store is on."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from ..adapters.registry import Adapter
from ..data.examples import Examples, share_label_set
from ..data.splits import folds, split_off
from ..errors import FtpeError
from ..evaluation.identity import data_fingerprint
from ..finetune.observers import TrainingObserver
from ..finetune.options import FinetuneOptions, LaunchOptions
from ..options import DataOptions
from ..prompting.templates import ExampleTemplate, template_fields
from ..workbench import Workbench, recorded_settings


def run_finetune(bench: Workbench, body: str, train: Any, name: str, eval: Any, finetune: FinetuneOptions,
                 data: DataOptions, launch: LaunchOptions, observers: Sequence[TrainingObserver] = ()) -> Adapter:
    """Train adapter ``name`` on ``train`` with the example template ``body``; the base model stays intact."""
    template = ExampleTemplate.from_body(body)
    bench.require_model()
    train_data = bench.examples(train, "--train", data)
    if eval is not None:
        val_data = bench.examples(eval, "--eval", data)
        share_label_set(train_data, val_data, data.labels)
    else:
        train_data, val_data = held_out(train_data, finetune)
    loaded = bench.loaded_model
    checkpoints = bench.recorder.checkpoints(name, finetune.method, loaded.source.model_id, loaded.fingerprint)
    try:
        with bench.adapters.using("base"):  # trained on the bare base; the adapter active before is active after
            adapter = fit(bench, name, template, train_data, val_data, finetune, list(observers), launch, checkpoints)
    except BaseException:
        if checkpoints is not None:
            checkpoints.failed()
        raise
    adapter.base_model_id, adapter.base_fingerprint = loaded.source.model_id, loaded.fingerprint
    bench.keep_adapter(adapter)
    _record(bench, adapter, body, train_data, val_data, (finetune, launch), checkpoints)
    return adapter


def held_out(train: Examples, options: FinetuneOptions) -> tuple[Examples, Examples | None]:
    """``--val-split`` of the training data (a search's share when searching), or no validation."""
    share = options.held_out_share
    return split_off(train, share, options.seed) if share else (train, None)


def fit(bench: Workbench, name: str, template: ExampleTemplate, train: Examples, val: Examples | None,
        options: FinetuneOptions, observers: list[TrainingObserver], launch: LaunchOptions,
        checkpoints: TrainingObserver | None = None) -> Adapter:
    """One training run, or a search of them (``--search``); ``checkpoints`` keeps the adapter on disk as it
    trains, or, after a search, the chosen trial's."""
    unfilled = template_fields(template.instructions)
    if unfilled:
        raise FtpeError(f"The instructions above the example hold {{{unfilled[0]}}}, which a fine-tune does not "
                        f"fill: write the text itself, or {{{{{unfilled[0]}}}}} for literal braces.")
    if options.search:
        adapter = _search(bench, name, template, train, val, options, observers, launch)
        if checkpoints is not None:
            checkpoints.end(adapter)
        return adapter
    return train_once(bench, name, template, train, val, options,
                      [*observers, *([checkpoints] if checkpoints else [])], launch)


def _search(bench: Workbench, name: str, template: ExampleTemplate, train: Examples, val: Examples,
            options: FinetuneOptions, observers: list[TrainingObserver], launch: LaunchOptions) -> Adapter:
    """``--search N``: trials trained in the kernel, each judged on ``val``; the best adapter, its trials in
    ``search_log``."""
    from ..finetune.search import search

    if launch.nproc:
        return _search_in_workers(bench, name, template, train, val, options, launch)
    if options.cv > 1:
        return _search_cross_validated(bench, name, template, train, options, observers, launch)
    outcome = search(lambda trial_options, watchers: train_once(bench, name, template, train, val, trial_options,
                                                                [*observers, *watchers], launch),
                     options, options.search, options.budget_minutes, bench.log)
    return outcome.best


def _search_in_workers(bench: Workbench, name: str, template: ExampleTemplate, train: Examples, val: Examples,
                       options: FinetuneOptions, launch: LaunchOptions) -> Adapter:
    """``--search N --nproc K``: checked and tokenised here once, the trials trained K at a time in workers."""
    from ..finetune.train import prepare
    from ..workers.search_launcher import search_in_workers

    loaded = bench.loaded_model
    job = prepare(loaded.tokenizer, name, template, train, val, options)
    outcome = search_in_workers(job, launch, loaded, bench.config.jobs_dir, options.search, options.budget_minutes,
                                bench.config.batch_size, bench.log)
    return outcome.best


def _search_cross_validated(bench: Workbench, name: str, template: ExampleTemplate, train: Examples,
                            options: FinetuneOptions, observers: list[TrainingObserver],
                            launch: LaunchOptions) -> Adapter:
    """``--search N --cv K``: each trial trains on K folds (pruning and the budget watch the first), its score the
    mean validation accuracy; the chosen settings are then trained once on all of ``train``."""
    from ..finetune.search import search

    splits = folds(train, options.cv, options.seed)

    def trial(trial_options: FinetuneOptions, watchers: list[TrainingObserver]) -> Adapter:
        adapters = [train_once(bench, name, template, rest, fold, trial_options,
                               [*observers, *watchers] if number == 0 else list(observers), launch)
                    for number, (rest, fold) in enumerate(splits)]
        scores = [adapter.best_metric for adapter in adapters]
        first = adapters[0]
        if first.interrupted_at is None and None not in scores:
            first.best_metric = sum(scores) / len(scores)
        return first

    outcome = search(trial, options, options.search, options.budget_minutes, bench.log)
    chosen = next(row for row in outcome.trials if row["best"])
    settings = {dimension.name: chosen[dimension.name] for dimension in outcome.space}
    final = dataclasses.replace(options, **settings, search=None, space=None, budget_minutes=None, cv=1)
    bench.log(f"Search: trial {chosen['trial']} chosen by {options.cv}-fold cross-validation "
              f"(mean validation accuracy {chosen['val_accuracy']:.3f}); trained once more on all "
              f"{len(train)} examples.")
    adapter = train_once(bench, name, template, train, None, final, observers, launch)
    adapter.search_log, adapter.best_metric = outcome.trials, chosen["val_accuracy"]
    return adapter


def _record(bench: Workbench, adapter: Adapter, body: str, train: Examples, val: Examples | None,
            options: tuple[FinetuneOptions, LaunchOptions], checkpoints: Any) -> None:
    record = {**bench.environment(), "template": body, "data": {"train": data_fingerprint(train),
              "val": data_fingerprint(val)}, "settings": recorded_settings(*options), "seed": options[0].seed}
    bench.recorder.record_finetune(adapter, record, checkpoints)
    folder = checkpoints.folder if checkpoints is not None and checkpoints.folder.is_dir() else None
    bench.recorder.track(f"fine-tune {adapter.name!r}", lambda tracker: tracker.finetune(
        adapter, record["settings"], record["model"], folder))


def train_once(bench: Workbench, name: str, template: ExampleTemplate, train: Examples, val: Examples | None,
               options: FinetuneOptions, observers: list[TrainingObserver], launch: LaunchOptions) -> Adapter:
    """Check and tokenise first, then train on the base with no adapter attached, in the kernel or in worker
    processes (imported when first used: transformers' Trainer is slow to import)."""
    from ..finetune.classify import prepare_classifier, train_head, train_probe
    from ..finetune.methods import COPY_METHODS, is_classifier
    from ..finetune.train import prepare, train_adapter

    loaded, batch = bench.loaded_model, bench.config.batch_size
    if loaded.placement.quantize and options.method in COPY_METHODS:
        raise FtpeError(f"--method {options.method} trains a copy of every weight, which a "
                        f"{loaded.placement.quantize} model cannot hold; use --method lora (QLoRA), or load the "
                        "model unquantised.")
    if launch.nproc:
        from ..workers.launcher import check_method, train_in_workers

        check_method(options)
        job = prepare(loaded.tokenizer, name, template, train, val, options)
        return train_in_workers(job, launch, loaded, bench.config.jobs_dir, observers, batch, bench.log)
    if not is_classifier(options):
        job = prepare(loaded.tokenizer, name, template, train, val, options)
        bench.adapters.use("base")
        base = loaded.training_base(trains_copy=options.method in COPY_METHODS)
        return train_adapter(base, loaded.tokenizer, loaded.location, loaded.device, job, observers,
                             eval_batch_size=batch)
    job = prepare_classifier(loaded.tokenizer, name, template, train, val, options)
    bench.adapters.use("base")
    base = loaded.training_base(trains_copy=options.method == "unfreeze")
    if options.method == "probe":
        return train_probe(base, loaded.tokenizer, job, batch, observers)
    return train_head(base, loaded.tokenizer, loaded.device, job, observers, eval_batch_size=batch)
