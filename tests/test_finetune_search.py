"""%%finetune --search: the space, the ask-and-tell loop (pruning, budget, the kept trial), and a real search."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
import torch

from ftpe_magics import FtpeError
from ftpe_magics.engine.finetune.options import FinetuneOptions
from ftpe_magics.engine.finetune.search import search
from ftpe_magics.engine.finetune.space import parse_space, search_space, starting_point

TEMPLATE = "Review: {text}\nSentiment: {label}"
ROWS = [{"text": t, "label": label} for t, label in [
    ("great fun", "positive"), ("so dull", "negative"), ("loved it", "positive"), ("awful film", "negative"),
    ("a joy", "positive"), ("boring", "negative"), ("superb", "positive"), ("a mess", "negative")]] * 2


def test_space_parses_ranges_choices_and_defaults_per_method():
    lr, rank = parse_space("lr=1e-5:1e-2 rank=4,8,16", FinetuneOptions)
    assert (lr.low, lr.high, lr.log, lr.kind) == (1e-5, 1e-2, True, float)
    assert rank.choices == (4, 8, 16) and rank.kind is int
    assert [d.name for d in search_space(FinetuneOptions(method="probe", search=2))] == ["l2"]
    assert {d.name for d in search_space(FinetuneOptions(search=2))} == {"lr", "rank", "alpha", "epochs"}
    options = FinetuneOptions(search=2, lr=5e-3, rank=8)
    assert starting_point(options, search_space(options)) == {"lr": 5e-3, "rank": 8, "alpha": 16, "epochs": 3}
    assert "rank" not in starting_point(FinetuneOptions(search=2, rank=5), search_space(FinetuneOptions(search=2)))
    for bad, words in [("lr=1e-2:1e-5", "LOW below HIGH"), ("rank=x", "not a int value"), ("lr", "NAME=LOW:HIGH"),
                       ("seed=1,2", "not a setting the search can vary"), ("dropout=0.5,1.5", "--dropout must be")]:
        with pytest.raises(FtpeError, match=words):
            parse_space(bad, FinetuneOptions)


def _fake_trainer(curves: dict[float, list[float]], seconds_per_step: float = 0.0):
    """Trains nothing: reports the validation accuracies ``curves[lr]`` as the engine's training would, so the
    loop's decisions (pruning, budget, the kept trial) are checked exactly."""
    from ftpe_magics.engine.finetune.observers import TrainingPlan

    def train(options, observers):
        scores = curves[round(options.lr, 6)]
        for observer in observers:
            observer.start(TrainingPlan(len(scores), "lora", 1))
        best = None
        for step, score in enumerate(scores, start=1):
            try:
                time.sleep(seconds_per_step)
                for observer in observers:
                    observer.step(step, 10 * step)
            except KeyboardInterrupt:  # as train_adapter does: the adapter as of this step
                return SimpleNamespace(best_metric=best, steps=step, interrupted_at=step, search_log=None)
            for observer in observers:
                observer.evaluation({"step": step, "eval_accuracy": score})
            best = score if best is None else max(best, score)
        return SimpleNamespace(best_metric=best, steps=len(scores), interrupted_at=None, search_log=None)

    return train


def test_the_loop_prunes_below_the_median_and_keeps_the_best_finished_trial():
    curves = {1e-3: [0.6, 0.7, 0.8], 1e-2: [0.7, 0.8, 0.9], 1e-4: [0.1, 0.1, 0.1]}
    options = FinetuneOptions(search=4, lr=1e-3, space="lr=1e-4,1e-3,1e-2")
    outcome = search(_fake_trainer(curves), options, 4, None, lambda message: None)
    states = {(row["lr"], row["state"]) for row in outcome.trials}
    assert outcome.trials[0]["lr"] == 1e-3  # the settings as given come first
    late_weak = [row for row in outcome.trials[2:] if row["lr"] == 1e-4]  # after the pruner's startup trials
    assert late_weak and all(row["state"] == "pruned" for row in late_weak), outcome.trials
    assert (1e-4, "pruned") in states
    for row in outcome.trials:
        if row["state"] == "pruned":
            assert row["steps"] < 3  # ended at the validation below the median, not at the end
    assert outcome.best.best_metric == max(r["val_accuracy"] for r in outcome.trials if r["state"] == "complete")
    assert sum(row["best"] for row in outcome.trials) == 1 and outcome.best.search_log is outcome.trials


def test_a_trial_below_the_median_at_an_early_validation_is_pruned():
    curves = {1e-3: [0.8, 0.8, 0.8], 2e-3: [0.8, 0.8, 0.8], 1e-4: [0.1, 0.1, 0.1]}
    options = FinetuneOptions(search=3, lr=1e-3, space="lr=1e-3,2e-3,1e-4")
    outcome = search(_fake_trainer(curves), options, 12, None, lambda message: None)
    pruned = [row for row in outcome.trials if row["state"] == "pruned"]
    assert pruned and all(row["lr"] == 1e-4 and row["steps"] == 1 for row in pruned)


def test_the_budget_stops_the_running_trial_and_the_search():
    said: list[str] = []
    curves = {1e-3: [0.5] * 400}
    options = FinetuneOptions(search=5, lr=1e-3, space="lr=1e-3", budget_minutes=0.005)  # 0.3 s
    started = time.monotonic()
    outcome = search(_fake_trainer(curves, seconds_per_step=0.01), options, 5, 0.005, said.append)
    assert time.monotonic() - started < 3
    assert [row["state"] for row in outcome.trials] == ["stopped (budget)"]
    assert outcome.trials[0]["steps"] < 400 and outcome.best.interrupted_at is not None


def test_a_real_search_keeps_the_best_adapter_and_the_base_intact(tiny_session, tmp_path):
    ids = tiny_session.tokenizer("Review: great fun\nSentiment:", return_tensors="pt")
    with torch.no_grad():
        before = tiny_session.base_model(**ids).logits.clone()
    adapters = set(tiny_session.adapters)
    adapter = tiny_session.finetune(TEMPLATE, ROWS, "searched", search=3, max_steps=6, batch_size=4, eval_steps=2,
                                    warmup=0, space="lr=1e-3:5e-2 rank=2,4")
    assert set(tiny_session.adapters) == adapters | {"searched"}
    assert adapter.name == "searched" and len(adapter.search_log) == 3
    finished = [row for row in adapter.search_log if row["state"] == "complete"]
    kept = next(row for row in adapter.search_log if row["best"])
    assert kept["val_accuracy"] == adapter.best_metric == max(row["val_accuracy"] for row in finished)
    assert 1e-3 <= kept["lr"] <= 5e-2 and kept["rank"] in (2, 4)
    with torch.no_grad():
        torch.testing.assert_close(tiny_session.base_model(**ids).logits, before)
    with tiny_session.using("searched"):
        assert tiny_session.model is not tiny_session.base_model


def test_finetune_magic_shows_the_trials(shell, capsys):
    shell.user_ns["rows"] = ROWS
    result = shell.run_cell("%%finetune --train rows --name s --search 2 --max-steps 4 --batch-size 4 --eval-steps 2 "
                            f"--space 'lr=1e-3:1e-2'\n{TEMPLATE}")
    assert result.error_in_exec is None, result.error_in_exec
    out = capsys.readouterr().out
    assert "Adapter 's'" in out
    from ftpe_magics import get_session
    from ftpe_magics.display.curves import search_trials_html

    html = search_trials_html(get_session().adapters["s"].search_log)
    assert "2 trial(s)" in html and "<img" in html


def test_cross_validated_trials_then_one_training_on_all_the_data(tiny_session):
    from fewshot_data import POOL, TEMPLATE

    said = []
    original, tiny_session.log = tiny_session.log, said.append
    try:
        adapter = tiny_session.finetune(TEMPLATE, POOL[:16] + POOL[20:36], "cv", search=2, cv=3, max_steps=2,
                                        batch_size=4, warmup=0, space="lr=1e-3,1e-2")
    finally:
        tiny_session.log = original
    assert len(adapter.search_log) == 2 and sum(row["best"] for row in adapter.search_log) == 1
    chosen = next(row for row in adapter.search_log if row["best"])
    assert adapter.best_metric == chosen["val_accuracy"]  # the mean over the 3 folds of that trial
    assert any("chosen by 3-fold cross-validation" in line and "all 32 examples" in line for line in said)
    assert adapter.steps == 2 and adapter.interrupted_at is None  # the final training, on all the data
    with pytest.raises(FtpeError, match="--cv K holds out each fold in turn"):
        tiny_session.finetune(TEMPLATE, POOL, "cv2", search=2, cv=3, val_split=0.2)
