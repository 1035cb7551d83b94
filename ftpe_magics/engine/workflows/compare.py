"""``%%compare``: every condition of a body on one eval set, in one table; with ``--train`` the conditions that
learn from data run on it (at each of ``--sizes``: a learning curve), searching and training with the session's
own few-shot search and fine-tuning. Each condition is recorded as it finishes."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ..adapters.registry import Adapter
from ..data.examples import Examples, share_label_set
from ..data.splits import without_eval_texts
from ..errors import FtpeError
from ..evaluation.comparison import CompareResult, run_conditions
from ..evaluation.condition_kinds import ConditionContext, parse_conditions
from ..evaluation.evaluator import Evaluator
from ..evaluation.identity import data_fingerprint
from ..evaluation.learning_curve import LearningCurve, run_curve
from ..finetune.options import FinetuneOptions, LaunchOptions
from ..options import CompareOptions, CurveOptions, DataOptions, EvalOptions, FewShotOptions
from ..prompting.fewshot import FewShotConfig
from ..prompting.templates import ExampleTemplate
from ..workbench import Workbench, recorded_settings, shares_work
from .fewshot import report, search_fewshot
from .finetune import fit, held_out
from .flexibility import flexibility_scorer, other_tasks, tasks_identity
from .from_store import stored_answer
from .selection import choose_on_train
from .study import study_body


@shares_work
def run_compare(bench: Workbench, body: str, eval: Any, train: Any, compare: CompareOptions, data: DataOptions,
                evaluation: EvalOptions, curve: CurveOptions, namespace: Mapping[str, Any] | None) -> CompareResult:
    """Run every condition of ``body`` (one per line) on the same eval set, in one table."""
    if train is None and curve.sizes:
        raise FtpeError("--sizes draws training sets from --train; add --train VAR.")
    train_data = bench.examples(train, "--train", data) if train is not None else None
    if compare.study:
        body = study_body(bench, body, train_data, evaluation.seed)
        curve = curve if curve.sizes else dataclasses.replace(curve, sizes="auto")
    specs = parse_conditions(body)
    eval_data = bench.examples(eval, "--eval", data, evaluation.limit, require_labels=evaluation.metric is None)
    stored = stored_answer(bench, specs, eval_data, evaluation, compare, namespace) if train_data is None else None
    if stored is not None:  # every condition is in the run store: no model is loaded to read them back
        evaluator, context, environment, parameters = (stored.evaluator, stored.context, stored.environment,
                                                       stored.parameters)
    else:
        evaluator = bench.evaluator(eval_data, evaluation, namespace, compare)
        context = condition_context(bench, evaluator, evaluation, namespace)
        environment, parameters = bench.environment(), bench.parameter_count()
    cache = bench.recorder.condition_cache(evaluator, environment, use=not evaluation.no_cache)
    flexibility = None
    if compare.also:
        tasks = other_tasks(bench, compare.also, namespace, evaluation)
        score = flexibility_scorer(bench, tasks)
        context.flexibility, context.flexibility_identity = score, tasks_identity(tasks)
        flexibility = {name: {"template": template, "base": scores} for (name, (_, template)), scores in
                       zip(tasks.items(), score(None).values(), strict=True)}
    settings = recorded_settings(compare, data, evaluation, curve)
    record = {**environment, "conditions": body, "settings": settings,
              "data": {"eval": data_fingerprint(eval_data), "train": data_fingerprint(train_data)}}
    learning_curve = None
    cache.record_now = record  # each result is kept as soon as it exists: a later line that fails costs none
    if train_data is None:
        results, not_run = run_conditions(context, evaluator, specs, cache)
    else:
        share_label_set(eval_data, train_data, data.labels)
        def choose(results: list, draw: Examples) -> None:
            choose_on_train(bench, context, specs, results, draw, compare, evaluation, namespace)

        learning_curve, not_run = _curve(bench, context, evaluator, specs, train_data, curve, evaluation, cache,
                                         choose)
        firsts = [point for point in learning_curve.points if point.repeat == 0]  # the table: the largest size's
        largest = max(firsts, key=lambda point: point.size) if firsts else None
        results = largest.conditions if largest else []
        for result in results:  # the verdict reads each line's selection at the table's size
            chosen = learning_curve.selection(result.condition, largest.size)
            if chosen is not None:
                result.extra["selection"] = chosen
    report(bench, evaluator, results, not_run)
    result = CompareResult(results, eval_data.texts, model_params=parameters, curve=learning_curve,
                           flexibility=flexibility)
    bench.recorder.record_comparison("compare", result, cache, record)
    bench.recorder.track("the comparison", lambda tracker: tracker.compare(result, settings, record["model"]))
    return result


def condition_context(bench: Workbench, evaluator: Evaluator, evaluation: EvalOptions,
                      namespace: Mapping[str, Any] | None) -> ConditionContext:
    """What %%compare's conditions may use: adapters, named few-shot configurations, and the session's own
    few-shot search (on a condition's pool; never the eval set) and training (on ``train_pool``)."""
    def search(config: FewShotConfig, options: FewShotOptions) -> tuple[FewShotConfig, list]:
        return search_fewshot(bench, config, evaluator.eval_data, options, evaluation, namespace)

    def train_one(name: str, template: ExampleTemplate, data: Examples, options: FinetuneOptions) -> Adapter:
        with bench.adapters.using("base"):  # the adapter the user made active is active again after
            return fit(bench, name, template, *held_out(data, options), options, [], LaunchOptions())

    return ConditionContext(bench.adapters, bench.runs.fewshot_configs, search_fewshot=search, train=train_one)


def _curve(bench: Workbench, context: ConditionContext, evaluator: Evaluator, specs: list, train: Examples,
           curve: CurveOptions, evaluation: EvalOptions, cache: Any, choose: Any) -> tuple[LearningCurve, list[str]]:
    """The conditions at every size of ``train`` (all of it without ``--sizes``); few-shot searches and
    fine-tunes run on each draw with the session's own search and training."""
    pool, removed = without_eval_texts(train, evaluator.eval_data)
    if not len(pool):
        raise FtpeError("Every example of --train is also in --eval: nothing is left to learn from. Give a "
                        "training set apart from the held-out one.")
    if removed:
        bench.log(f"Removed {removed} training example(s) whose text is also in the eval set: they are never "
                  "trained on or drawn as demonstrations.")
    sizes = None if curve.auto else curve.size_list or [len(pool)]
    cache.quiet = True
    several = sizes is None or len(sizes) * curve.repeats > 1
    learning_curve, not_run = run_curve(context, evaluator, specs, pool, sizes, curve.repeats, evaluation.seed,
                                        cache, bench.log if several else lambda m: None, curve.budget_minutes,
                                        choose)
    learning_curve.removed = removed
    if cache.from_store:
        bench.log(f"Read {cache.from_store} of the curve's {len(cache.entries)} results from the run store (same "
                  "weights, data and settings as before; --no-cache runs them again).")
    return learning_curve, not_run
