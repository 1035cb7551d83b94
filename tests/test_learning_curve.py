"""%%compare --train --sizes: nested draws, flat and learning conditions, the crossover, reuse of the store."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fewshot_data import EVAL, POOL

from ftpe_magics import FtpeError
from ftpe_magics.engine.data.splits import nested_draws
from ftpe_magics.engine.data.splits import without_eval_texts as usable_pool
from ftpe_magics.engine.evaluation.evaluator import ConditionResult
from ftpe_magics.engine.evaluation.identity import data_fingerprint
from ftpe_magics.engine.evaluation.learning_curve import CurvePoint, LearningCurve
from ftpe_magics.engine.evaluation.stats import mcnemar_p
from ftpe_magics.engine.workflows import finetune as finetune_workflow

TEMPLATE = "Review: {text}\nSentiment: {label}"
BODY = ("zero: prompt Review: {text}\\nSentiment:\n"
        "fs: fewshot curve-fs k=2\n"
        "lora: finetune lora max-steps=4 batch-size=4 lr=2e-2 warmup=0 Review: {text}\\nSentiment: {label}\n")


@pytest.fixture(scope="module")
def data():
    return POOL, EVAL


@pytest.fixture(scope="module")
def curve_session(tiny_session, data):
    train, eval_rows = data
    tiny_session.fewshot(TEMPLATE, train, eval_rows, name="curve-fs", k=2, no_cache=True)
    return tiny_session


def _condition(label: str, kind: str, correct: list[bool]) -> ConditionResult:
    predictions = ["a" if right else "b" for right in correct]
    return ConditionResult(label, kind, "", ["a"] * len(correct), predictions, predictions,
                           [float(right) for right in correct], ["a", "b"], 1.0, [10] * len(correct), "")


def test_draws_are_nested_seeded_and_differ_between_repeats(data):
    train, eval_rows = data
    from ftpe_magics.engine.data.examples import load_examples

    pool = load_examples(train, "text", "label", None, None, what="--train")
    first, again, other = (nested_draws(pool, [4, 8, 16], seed) for seed in (0, 0, 1))
    assert set(first[4].texts) <= set(first[8].texts) <= set(first[16].texts)
    assert [d.texts for d in first.values()] == [d.texts for d in again.values()]
    assert first[8].texts != other[8].texts
    with pytest.raises(FtpeError, match="more than the"):
        nested_draws(pool, [4, len(pool) + 1], 0)


def test_the_leakage_guard_removes_planted_eval_examples_before_drawing(data):
    from ftpe_magics.engine.data.examples import load_examples

    train, eval_rows = data
    planted = load_examples(train + eval_rows[:2], "text", "label", None, None, what="--train")
    evaluation = load_examples(eval_rows, "text", "label", None, None, what="--eval")
    pool, removed = usable_pool(planted, evaluation)
    assert removed == 2 and not set(pool.texts) & set(evaluation.texts)


def test_curve_runs_learning_conditions_per_size_and_keeps_the_others_flat(curve_session, data):
    train, eval_rows = data
    before = curve_session.base_model.lm_head.weight.detach().clone()
    adapters = list(curve_session.adapters)
    result = curve_session.compare(BODY, eval_rows, train=train, sizes="4,8", repeats=2, no_cache=True)
    curve = result.curve
    assert [(p.size, p.repeat) for p in curve.points] == [(4, 0), (4, 1), (8, 0), (8, 1)]
    zero = [c for p in curve.points for c in p.conditions if c.condition == "zero"]
    assert all(c is zero[0] for c in zero)  # run once
    assert all(curve.selection("zero", size, repeat) for size in (4, 8) for repeat in (0, 1))  # scored per draw
    lora = [c for p in curve.points for c in p.conditions if c.condition == "lora"]
    assert len({id(c) for c in lora}) == 4 and all(c.kind == "finetune" and c.train_seconds > 0 for c in lora)
    assert lora[0].spec == "lora on 4 examples" and lora[2].spec == "lora on 8 examples"
    # few-shot demonstrations come from that size's draw (the first n of the seeded shuffle)
    pool, _ = usable_pool(curve_session.examples(train, "--train"), curve_session.examples(eval_rows, "--eval"))
    for point in curve.points:
        draw = nested_draws(pool, [4, 8], point.repeat)[point.size]
        shown = next(c for c in point.conditions if c.condition == "fs").example_prompt
        demos = [line[len("Review: "):] for line in shown.splitlines() if line.startswith("Review: ")][:-1]
        assert demos and set(demos) <= set(draw.texts)
    assert list(curve_session.adapters) == adapters and curve_session.active_adapter is None
    torch.testing.assert_close(curve_session.base_model.lm_head.weight, before)
    table = curve.to_pandas()
    assert set(table["n"]) == {4, 8} and (table["repeats"] == 2).all()
    assert result.conditions == curve.points[2].conditions  # the table: the largest size, first draw
    assert "Crossover:" in str(result.verdict())


def test_crossover_is_stated_only_when_the_pooled_test_holds():
    n = 40
    prompt = _condition("prompt", "prompt", [i < 20 for i in range(n)])

    def point(size, repeat, right):
        return CurvePoint(size, repeat, [prompt, _condition("ft", "finetune", [i < right for i in range(n)])])

    significant_alone = mcnemar_p([i < 36 for i in range(n)], prompt.correct)
    assert significant_alone < 0.05
    curve = LearningCurve([16, 64], 2, [point(16, 0, 22), point(16, 1, 21), point(64, 0, 36), point(64, 1, 14)])
    pooled = mcnemar_p([i < 36 for i in range(n)] + [i < 14 for i in range(n)], prompt.correct * 2)
    assert pooled >= 0.05
    crossover = curve.crossover()
    assert crossover.size is None and "not reached up to n=64" in crossover.sentence
    assert f"p = {pooled:.3g}" in crossover.sentence
    crossing = LearningCurve([16, 64], 2, [point(16, 0, 22), point(16, 1, 21), point(64, 0, 36), point(64, 1, 35)])
    found = crossing.crossover()
    assert found.size == 64 and "at n=64" in found.sentence and found.p < 0.05
    spread = crossing.to_pandas().set_index(["condition", "n"]).loc[("ft", 64), "spread"]
    assert spread == pytest.approx(0.0125)
    assert crossing.draw_spreads()["ft"] == (2, pytest.approx(0.0125))


def test_a_second_curve_reads_its_results_from_the_store(curve_session, data, tmp_path):
    train, eval_rows = data
    said: list[str] = []
    original_store, original_log = curve_session.config.store, curve_session.log
    curve_session.config.store, curve_session.log = str(tmp_path / "runs.sqlite"), said.append
    try:
        first = curve_session.compare(BODY, eval_rows, train=train, sizes="4")
        grown = curve_session.compare(BODY, eval_rows, train=train, sizes="4,8")
        assert any("Read 3 of the curve's 5 results" in line for line in said), said
        assert grown.curve.points[0].conditions[2].accuracy == first.curve.points[0].conditions[2].accuracy
        run_id = int(curve_session.history_table(kind="compare").iloc[0]["id"])
        view, back = curve_session.stored_run(run_id)
        assert back.curve.to_pandas().equals(grown.curve.to_pandas())
        fingerprint = data_fingerprint(curve_session.examples(train, "--train"))
        assert fingerprint == data_fingerprint(curve_session.examples(list(train), "--train"))  # by content
        assert fingerprint != data_fingerprint(curve_session.examples(train[1:], "--train"))
    finally:
        curve_session.config.store, curve_session.log = original_store, original_log


def test_compare_magic_shows_the_learning_curve_tab(shell, capsys, data):
    train, eval_rows = data
    shell.user_ns.update(tr=train, ev=eval_rows)
    shell.run_cell(f"%%fewshot --train tr --eval ev --name curve-fs --k 2\n{TEMPLATE}")
    result = shell.run_cell("%%compare --train tr --eval ev --sizes 4,8 --out res\n" + BODY)
    assert result.error_in_exec is None, result.error_in_exec
    from ftpe_magics.display.html import compare_sections

    sections = compare_sections(shell.user_ns["res"])
    assert list(sections)[0] == "Learning curve" and "Crossover:" in sections["Learning curve"]
    assert "<img" in sections["Learning curve"]


def test_a_stopped_curve_keeps_its_finished_sizes_in_the_store(curve_session, data, tmp_path, monkeypatch):
    train, eval_rows = data
    original_store, original_log = curve_session.config.store, curve_session.log
    curve_session.config.store, curve_session.log = str(tmp_path / "runs.sqlite"), lambda message: None
    real_train, calls = finetune_workflow.train_once, []

    def stopped_at_the_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the stop button, between two training steps of size 8
        return real_train(*args, **kwargs)

    monkeypatch.setattr(finetune_workflow, "train_once", stopped_at_the_second)
    try:
        result = curve_session.compare(BODY, eval_rows, train=train, sizes="4,8")
        assert result.curve.measured_sizes() == [4] and len(result.curve.points) == 1
        stored = curve_session.recorder.store().runs(("condition",))
        assert len(stored) == 4  # zero, fs at 4, lora at 4, fs at 8: each kept as it finished
    finally:
        curve_session.config.store, curve_session.log = original_store, original_log


def test_a_fewshot_line_can_search_its_own_pool_without_a_curve(curve_session, data):
    _, eval_rows = data
    result = curve_session.compare("fs: fewshot curve-fs search=3 search-k=1,2", eval_rows, no_cache=True)
    searched = result.conditions[0].extra["search"]
    assert searched["candidates"] == 3 and searched["best"]["k"] in (1, 2)
    assert result.curve is None


class _Ahead:
    """A curve stand-in: the fine-tune is significantly ahead from ``threshold`` examples on."""

    def __init__(self, threshold: int):
        self.threshold, self.bracket = threshold, None

    def ahead(self, size: int) -> bool:
        return size >= self.threshold


class _FakeRun:
    def __init__(self, pool_size: int, threshold: int, seconds_per_size: float = 0.0):
        self.pool, self.curve, self.ran, self.said = [None] * pool_size, _Ahead(threshold), [], []
        self.seconds = seconds_per_size

    def size(self, size: int) -> list[str]:
        import time

        self.ran.append(size)
        time.sleep(self.seconds)
        return []

    def log(self, message: str) -> None:
        self.said.append(message)


def test_the_adaptive_curve_doubles_then_bisects_to_the_crossover():
    from ftpe_magics.engine.evaluation.learning_curve import hunt

    run = _FakeRun(1024, threshold=100)
    assert hunt(run, None) == []
    assert run.ran == [16, 32, 64, 128, 91] and run.curve.bracket == (91, 128)  # 128 / 91 < 1.5: close enough
    never = _FakeRun(40, threshold=10_000)
    hunt(never, None)
    assert never.ran == [16, 32, 40] and never.curve.bracket is None  # the whole pool, and no crossover
    first = _FakeRun(1024, threshold=1)
    hunt(first, None)
    assert first.ran == [16] and first.curve.bracket is None  # ahead at once: the crossover is below the start


def test_the_adaptive_curve_stops_at_its_budget():
    from ftpe_magics.engine.evaluation.learning_curve import hunt

    run = _FakeRun(1024, threshold=10_000, seconds_per_size=0.05)
    hunt(run, budget_minutes=0.1 / 60)  # 0.1 s: two or three sizes
    assert 1 <= len(run.ran) <= 3 and any("budget of" in line for line in run.said)


def test_sizes_auto_runs_a_curve_end_to_end(curve_session, data):
    train, eval_rows = data
    body = "zero: prompt Review: {text}\\nSentiment:\nfs: fewshot curve-fs k=2\n"
    result = curve_session.compare(body + "lora: finetune lora max-steps=2 batch-size=4 warmup=0 Review: {text}"
                                   "\\nSentiment: {label}\n", eval_rows, train=train, sizes="auto", no_cache=True)
    curve = result.curve
    assert curve.hunted and curve.sizes[0] == 16 and curve.sizes == sorted(curve.sizes)
    assert set(curve.sizes) <= {16, 32, 40} and result.conditions[0].condition == "zero"
    sentence = curve.crossover().sentence
    assert "sizes run: " + ", ".join(map(str, curve.sizes)) in sentence
    assert max(p.size for p in curve.points) == curve.sizes[-1]
    with pytest.raises(FtpeError, match="--budget-minutes bounds the adaptive curve"):
        curve_session.compare(body, eval_rows, train=train, sizes="16", budget_minutes=1)


def test_the_study_writes_its_conditions_and_runs_them_on_the_curve(curve_session, data):
    train, eval_rows = data
    said = []
    original_log, curve_session.log = curve_session.log, said.append
    try:
        result = curve_session.compare(TEMPLATE, eval_rows, train=train, study=True, sizes="16", no_cache=True)
    finally:
        curve_session.log = original_log
    assert [c.condition for c in result.conditions] == ["zero-shot", "few-shot", "probe", "head", "lora"]
    assert [c.kind for c in result.conditions] == ["prompt", "fewshot", "finetune", "finetune", "finetune"]
    assert result.conditions[1].extra["search"]["candidates"] == 8 and result.conditions[4].extra["search"]
    assert any(line.startswith("Study: zero-shot; few-shot searched over 8 candidates") for line in said)
    assert result.curve.sizes == [16] and result.verdict().numbers["prompt"] in ("zero-shot", "few-shot")
    assert result.verdict().numbers["chosen_on_train"] == {"prompt": True, "finetune": True}  # every line scored
    assert result.conditions[2].extra["selection"]["how"] == "its validation split of --train"
    with pytest.raises(FtpeError, match="--study compares what each side learns from --train"):
        curve_session.compare(TEMPLATE, eval_rows, study=True)
    with pytest.raises(FtpeError, match="one example template ending in"):
        curve_session.compare("zero: prompt Review: {text}", eval_rows, train=train, study=True)


OTHER_TASK = {"data": [{"text": text, "label": label} for text, label in [
    ("play some music by the band", "music"), ("book a table for two", "restaurant"),
    ("add this song to my playlist", "music"), ("book a restaurant tonight", "restaurant")] * 3],
    "template": "Request: {text}\nIntent: {label}"}


def test_also_measures_what_a_fine_tune_costs_on_another_task(curve_session, data, tmp_path):
    train, eval_rows = data
    body = ("zero: prompt Review: {text}\\nSentiment:\nprobe: finetune probe Review: {text}\\nSentiment: {label}\n"
            "lora: finetune lora max-steps=6 batch-size=4 lr=5e-2 warmup=0 Review: {text}\\nSentiment: {label}\n")
    namespace = {"intents": OTHER_TASK}
    original = curve_session.config.store
    curve_session.config.store = str(tmp_path / "runs.sqlite")
    try:
        result = curve_session.compare(body, eval_rows, train=train, also="intents=intents", namespace=namespace,
                                       no_cache=True)
        base = result.flexibility["intents"]["base"]
        assert len(base) == 12 and result.flexibility["intents"]["template"] == OTHER_TASK["template"]
        table = result.to_pandas().set_index("condition")["intents_accuracy"]
        assert table["zero"] == float(np.mean(base))  # a prompt leaves the model unchanged
        assert table["probe"] == float(np.mean(base))  # so does a probe: its head reads the frozen model
        lora = result.conditions[2].extra["also"]["intents"]
        assert len(lora) == 12 and table["lora"] == float(np.mean(lora))
        written = result.verdict()
        sentence = next(s for s in written.sentences if s.startswith("Flexibility:"))
        finetune = written.numbers["finetune"]
        change = written.numbers["flexibility"]["intents"]["change"]
        assert sentence.startswith(f"Flexibility: {finetune}: {change * 100:+.1f} points on intents")
        run_id = int(curve_session.history_table(kind="compare").iloc[0]["id"])
        _, back = curve_session.stored_run(run_id)  # the stored comparison says the same
        assert back.verdict().sentences == written.sentences
    finally:
        curve_session.config.store = original
    with pytest.raises(FtpeError, match="--also intents: no variable named 'missing'"):
        curve_session.compare(body, eval_rows, train=train, also="intents=missing", namespace=namespace)
    with pytest.raises(FtpeError, match="the variable must hold"):
        curve_session.compare(body, eval_rows, train=train, also="bad=bad", namespace={"bad": [1, 2]})


def test_with_train_each_side_is_chosen_before_the_eval_set_is_read(curve_session, data, tmp_path):
    train, eval_rows = data
    body = ("zero: prompt Review: {text}\\nSentiment:\nplain: prompt {text} is\nfs: fewshot curve-fs k=2\n"
            "lora: finetune lora search=2 max-steps=2 batch-size=4 warmup=0 Review: {text}\\nSentiment: {label}\n")
    original = curve_session.config.store
    curve_session.config.store = str(tmp_path / "runs.sqlite")
    try:
        result = curve_session.compare(body, eval_rows, train=train, no_cache=True)
        run_id = int(curve_session.history_table(kind="compare").iloc[0]["id"])
        chosen = {c.condition: c.extra.get("selection") for c in result.conditions}
        on_pool = curve_session.compare("zero: prompt Review: {text}\\nSentiment:\nplain: prompt {text} is",
                                        train, no_cache=True)  # the pool itself as the eval set
        assert chosen["zero"]["accuracy"] == on_pool.conditions[0].accuracy
        assert chosen["plain"]["accuracy"] == on_pool.conditions[1].accuracy
        assert chosen["fs"]["how"] == "cross-validation on --train"
        assert chosen["lora"]["how"] == "its search's validation on --train"
        numbers = result.verdict().numbers
        assert numbers["chosen_on_train"] == {"prompt": True, "finetune": True}
        best = max(("zero", "plain", "fs"), key=lambda label: (chosen[label]["accuracy"], 0))
        assert numbers["prompt"] == best or chosen[numbers["prompt"]]["accuracy"] == chosen[best]["accuracy"]
        assert curve_session.stored_run(run_id)[1].verdict().sentences == result.verdict().sentences
    finally:
        curve_session.config.store = original


def test_the_curve_compares_the_sides_best_chosen_on_train_not_on_eval():
    n = 40
    lucky = _condition("lucky", "prompt", [i < 30 for i in range(n)])  # best on the eval set
    steady = _condition("steady", "prompt", [i < 20 for i in range(n)])  # best on --train
    lucky.extra["selection"] = {"accuracy": 0.5, "how": "scored on --train"}
    steady.extra["selection"] = {"accuracy": 0.8, "how": "scored on --train"}
    tuned = _condition("ft", "finetune", [i < 36 for i in range(n)])
    curve = LearningCurve([16], 1, [CurvePoint(16, 0, [lucky, steady, tuned])])
    curve.selections = {(c.condition, 16, 0): c.extra.get("selection") for c in (lucky, steady, tuned)}
    prompt, finetune, p, gap = curve.standing(16)
    assert (prompt, finetune) == ("steady", "ft") and gap == pytest.approx(0.4)
    assert p == mcnemar_p(tuned.correct, steady.correct)
