"""Validation sized to the run: one pass for accuracy and loss, checks on a seeded subsample within a fifth of the
training time, the whole split at the end and for the choice of the best state."""

import pytest

from ftpe_magics.engine.finetune import validation
from ftpe_magics.engine.finetune.validation import (
    INTERMEDIATE_EXAMPLES,
    ValidationSchedule,
    intermediate_positions,
)

TEMPLATE = "Review: {text}\nSentiment: {label}"
WORDS = ["great", "dull", "loved", "awful", "joy", "boring", "superb", "mess"]
ROWS = [{"text": f"{word} {i}", "label": "positive" if n % 2 == 0 else "negative"}
        for i in range(25) for n, word in enumerate(WORDS)]  # 200 examples


def test_the_schedule_keeps_checks_within_a_fifth_of_the_training_time():
    every = ValidationSchedule(total_steps=10, every=3, checked_examples=128, batch_size=8)
    assert [step for step in range(1, 11) if every.due(step)] == [3, 6, 9]  # the end is the whole split's
    timed = ValidationSchedule(total_steps=100, every=None, checked_examples=24, batch_size=8)
    timed.train_seconds = 4.0  # 4 steps of 1 s: a check is estimated at 1 s x 1/3 x 24 / 8 = 1 s
    assert not timed.due(4)
    timed.train_seconds = 5.0
    assert timed.due(5)
    timed.spent(2.0)  # it took 2 s: the next is due when 2 + 2 s fit in a fifth of the training time
    timed.train_seconds = 19.0
    assert not timed.due(19)
    timed.train_seconds = 20.0
    assert timed.due(20)


def test_the_subsample_is_seeded_and_only_for_splits_larger_than_it():
    assert intermediate_positions(INTERMEDIATE_EXAMPLES, 0) is None
    first, again = intermediate_positions(400, 3), intermediate_positions(400, 3)
    assert first == again and len(first) == INTERMEDIATE_EXAMPLES and first != intermediate_positions(400, 4)


@pytest.mark.parametrize("method", ["lora", "head"])
def test_checks_score_the_subsample_and_the_end_scores_the_whole_split_in_one_pass(tiny_session, monkeypatch,
                                                                                   method):
    from transformers import Trainer

    def no_evaluation_loop(*args, **kwargs):
        raise AssertionError("the Trainer's evaluation loop ran: validation is one pass of ours")

    monkeypatch.setattr(Trainer, "evaluate", no_evaluation_loop)
    held_out = ROWS[:160]
    adapter = tiny_session.finetune(TEMPLATE, ROWS[160:], f"sized-{method}", eval=held_out, method=method,
                                    max_steps=6, eval_steps=2, batch_size=8, lr=1e-2, warmup=0)
    checks = [r for r in adapter.history if "eval_accuracy" in r]
    assert [(r["step"], r["eval_examples"]) for r in checks] == [(2, 128), (4, 128), (6, 160)]
    assert all(r["eval_loss"] > 0 for r in checks)
    final = checks[-1]
    best_check = max(checks[:-1], key=lambda r: (r["eval_accuracy"], -r["eval_loss"]))
    # the adapter's accuracy is a whole-split one: the final state's, or the best check's state scored whole
    assert adapter.best_metric >= final["eval_accuracy"]
    if adapter.best_metric != final["eval_accuracy"]:
        assert best_check["step"] < 6
    scored = tiny_session.compare(f"c: adapter sized-{method}", held_out).conditions[0]
    assert scored.accuracy == pytest.approx(adapter.best_metric)


def test_without_eval_steps_validation_costs_about_a_fifth_of_training(tiny_session, monkeypatch):
    spent = []
    real = validation.ValidationSchedule.spent

    def counting(self, seconds):
        spent.append((seconds, self.train_seconds))
        real(self, seconds)

    monkeypatch.setattr(validation.ValidationSchedule, "spent", counting)
    tiny_session.finetune(TEMPLATE, ROWS[160:], "timed", eval=ROWS[:160], max_steps=40, batch_size=8, lr=1e-2)
    assert spent, "no check between steps"
    total, train = sum(s for s, _ in spent), spent[-1][1]
    assert total <= validation.VALIDATION_SHARE * train + spent[-1][0]
