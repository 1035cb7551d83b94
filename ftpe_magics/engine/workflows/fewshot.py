"""``%%fewshot``: k-shot prompts built from a training pool, scored on a held-out set; a ``--sweep-k`` of k
values, or a ``--search`` of configurations judged on a validation split of the pool (the eval set is not read
until the chosen one is scored)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ..data.examples import Examples, share_label_set
from ..errors import FtpeError
from ..evaluation.comparison import CompareResult
from ..evaluation.evaluator import Evaluator
from ..evaluation.identity import data_fingerprint, fewshot_condition_identity
from ..options import DataOptions, EvalOptions, FewShotOptions
from ..prompting.fewshot import FewShotConfig
from ..prompting.templates import ExampleTemplate
from ..workbench import Workbench, recorded_settings, shares_work


@shares_work
def run_fewshot(bench: Workbench, body: str, train: Any, eval: Any, name: str | None, fewshot: FewShotOptions,
                data: DataOptions, evaluation: EvalOptions, namespace: Mapping[str, Any] | None) -> CompareResult:
    """Score the configuration (each k of a sweep) on ``eval``; the named configuration is kept for %%compare."""
    template = ExampleTemplate.from_body(body)
    eval_data = bench.examples(eval, "--eval", data, evaluation.limit)
    train_data = bench.examples(train, "--train", data)
    share_label_set(eval_data, train_data, data.labels)
    config = FewShotConfig(name or f"fewshot-k{fewshot.k}", template, train_data, k=fewshot.k,
                           select=fewshot.select, seed=evaluation.seed, orders=fewshot.orders,
                           allow_overlap=fewshot.allow_overlap, calibrate=fewshot.calibrate)
    search_log = None
    if fewshot.search:
        config, search_log = search_fewshot(bench, config, eval_data, fewshot, evaluation, namespace)
    evaluator = bench.evaluator(eval_data, evaluation, namespace)
    cache = bench.recorder.condition_cache(evaluator, bench.environment(), use=not evaluation.no_cache)
    record = {**bench.environment(), "template": body, "data": {"eval": data_fingerprint(eval_data),
              "train": data_fingerprint(train_data)}, "settings": recorded_settings(fewshot, data, evaluation)}
    cache.record_now = record  # each k of a sweep is kept as soon as it is scored
    ks = fewshot.sweep or [config.k]
    results: list = []
    try:
        for k in ks:
            label = f"{config.name} k={k}" if fewshot.sweep else config.name
            results.append(cache.run(label, fewshot_condition_identity(evaluator, config, k),
                                     lambda label=label, k=k: evaluator.fewshot(label, config, k=k)))
            if results[-1].interrupted:
                break
    except KeyboardInterrupt:
        pass  # stopped between forward passes: what finished is kept
    report(bench, evaluator, results, [f"k={k}" for k in ks[len(results):]])
    bench.runs.keep_fewshot(config)
    result = CompareResult(results, eval_data.texts, title=config.name, search_log=search_log,
                           model_params=bench.parameter_count())
    bench.recorder.record_comparison("fewshot", result, cache, record, name=name, sweep=bool(fewshot.sweep))
    return result


@shares_work
def search_fewshot(bench: Workbench, config: FewShotConfig, eval_data: Examples, fewshot: FewShotOptions,
                   evaluation: EvalOptions, namespace: Mapping[str, Any] | None) -> tuple[FewShotConfig, list]:
    """``--search N``: candidates scored by cross-validation on the pool, or on one validation split of it (the
    eval set is not read); the best configuration, drawing from the pool the search chose for, and the log."""
    from ..evaluation.prompt_search import Candidate, check_verbalizers, draw_candidates, run_search, search_folds

    instructions = variable_list(fewshot.instructions, "--instructions", namespace, str)
    verbalizers = check_verbalizers(variable_list(fewshot.verbalizers, "--verbalizers", namespace, dict),
                                    config.train.label_set)
    chosen_pool, splits, leaked = search_folds(config.train, eval_data, fewshot.val_split, evaluation.seed, fewshot.cv)
    if leaked:
        bench.log(f"Search: removed {leaked} training example(s) whose text is also in the eval set, before "
                  "drawing the validation split.")
    smallest = min(len(pool) for pool, _ in splits)
    held = f"its --val-split {fewshot.val_split:g}" if len(splits) == 1 else f"one of its {len(splits)} folds"
    if config.k > smallest:
        raise FtpeError(f"--k {config.k} is more than the {smallest} examples the search draws demonstrations "
                        f"from (--train less {held}); use --k {smallest} or fewer.")
    too_big = [k for k in fewshot.search_ks if k > smallest]
    if too_big:
        bench.log(f"Search: --search-k {', '.join(map(str, too_big))} left out (more than the {smallest} examples "
                  "the search draws from).")
    first = Candidate(config.k, config.select, config.seed, calibrate=config.calibrate)
    candidates = draw_candidates(fewshot.search, first, fewshot.search_ks, len(instructions), len(verbalizers),
                                 smallest, evaluation.seed)
    score = fold_scorer(bench, splits, evaluation, namespace)
    return run_search(score, dataclasses.replace(config, train=chosen_pool), candidates, instructions, verbalizers,
                      say=bench.log)


def fold_scorer(bench: Workbench, splits: list, evaluation: EvalOptions, namespace: Mapping[str, Any] | None):
    """A candidate's score: each fold's validation examples with demonstrations from the rest, as one result."""
    from ..evaluation.prompt_search import merged

    evaluators = [bench.evaluator(val, dataclasses.replace(evaluation, limit=None), namespace) for _, val in splits]

    def score(label: str, config: FewShotConfig):
        results = []
        for (pool, _), evaluator in zip(splits, evaluators, strict=True):
            results.append(evaluator.fewshot(label, dataclasses.replace(config, train=pool)))
            if results[-1].interrupted:
                break
        return merged(results)

    return score


def report(bench: Workbench, evaluator: Evaluator, results: list, not_run: list[str]) -> None:
    """Say what the scores need said (interruptions, label notices); remember finished prompting scores."""
    if not results:
        raise FtpeError("Stopped before any condition finished: nothing was scored.")
    for notice in dict.fromkeys(evaluator.notices):
        bench.log(notice)
    stopped = [r.condition for r in results if r.interrupted]
    if stopped or not_run:
        bench.log(f"Stopped: {', '.join(stopped) or 'nothing'} interrupted (partial outputs kept, not scored)"
                  + (f"; not run: {', '.join(not_run)}." if not_run else "."))
    bench.runs.remember_scores([r for r in results if not r.interrupted])


def variable_list(value: Any, option: str, namespace: Mapping[str, Any] | None, item: type) -> list:
    """A list option given as a list, or as the name of a notebook variable holding one."""
    if value is None:
        return []
    if isinstance(value, str):
        if value not in (namespace or {}):
            raise FtpeError(f"{option}: no variable named {value!r} in the notebook. Define it first.")
        value = namespace[value]
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, item) for v in value):
        raise FtpeError(f"{option} takes a non-empty list of {item.__name__} values.")
    return list(value)
