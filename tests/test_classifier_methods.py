"""The cheapest fine-tunes: a linear probe and a classification head on the session's model."""

import numpy as np
import pytest
import torch

from ftpe_magics import FtpeError

TEMPLATE = "Review: {text}\nSentiment: {label}"
GOOD = ["great fun", "loved it", "a joy", "superb", "great and loved", "a superb joy", "loved the fun", "great joy"]
BAD = ["awful film", "so dull", "boring", "a mess", "awful mess", "dull and boring", "a boring mess", "so awful"]
ROWS = [{"text": t, "label": "positive"} for t in GOOD] + [{"text": t, "label": "negative"} for t in BAD]
HEAD = {"max_steps": 40, "batch_size": 8, "warmup": 0, "lr": 5e-2}


def base_logits(session):
    ids = session.tokenizer("Review: great fun\nSentiment:", return_tensors="pt")
    with torch.no_grad():
        return session.base_model(**ids).logits.clone()


def accuracy_of(session, name):
    table = session.compare(f"c: adapter {name}", ROWS).to_pandas()
    return float(table["accuracy"][0]), table


@pytest.mark.parametrize("pool", ["mean", "last"])
def test_probe_separates_a_separable_task_in_one_step(tiny_session, pool):
    before = base_logits(tiny_session)
    adapter = tiny_session.finetune(TEMPLATE, ROWS, f"probe-{pool}", eval=ROWS, method="probe", pool=pool, l2=1e-4)
    assert adapter.method == "probe" and adapter.trainable_params == 2 * (tiny_session.model.config.hidden_size + 1)
    assert adapter.best_metric == 1.0
    accuracy, table = accuracy_of(tiny_session, f"probe-{pool}")
    assert accuracy == 1.0 and table["consistency"][0] == 1.0 and table["trainable_params"][0] > 0
    torch.testing.assert_close(base_logits(tiny_session), before)


@pytest.mark.parametrize("variant", [{}, {"freeze_body": True}, {"method": "unfreeze", "head": True, "lr": 1e-2}],
                         ids=["lora-body", "frozen-body", "unfreeze-head"])
def test_head_learns_and_leaves_the_base_intact(tiny_session, variant):
    before = base_logits(tiny_session)
    options = {"method": "head", **HEAD, **variant}
    name = f"head-{'-'.join(map(str, variant.values())) or 'lora'}"
    adapter = tiny_session.finetune(TEMPLATE, ROWS, name, eval=ROWS, eval_steps=20, **options)
    losses = [r["loss"] for r in adapter.history if "loss" in r]
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])
    assert adapter.head is not None and adapter.steps == 40
    accuracy, _ = accuracy_of(tiny_session, name)
    assert accuracy >= 0.75
    torch.testing.assert_close(base_logits(tiny_session), before)
    assert not any("lora" in n for n, _ in tiny_session.base_model.named_modules())


@pytest.mark.parametrize("method", ["probe", "head"])
def test_save_and_load_give_identical_predictions(tiny_session, tmp_path, method):
    options = {"method": method} if method == "probe" else {"method": method, **HEAD, "max_steps": 8}
    tiny_session.finetune(TEMPLATE, ROWS, f"rt-{method}", **options)
    first = tiny_session.compare(f"c: adapter rt-{method}", ROWS).conditions[0]
    folder = tiny_session.save_adapter(f"rt-{method}", str(tmp_path / method))
    tiny_session.load_adapter(folder, name=f"back-{method}")
    again = tiny_session.compare(f"c: adapter back-{method}", ROWS).conditions[0]
    assert again.predictions == first.predictions
    assert tiny_session.adapters[f"back-{method}"].head.label_set == ["negative", "positive"]


def test_samples_draw_from_the_heads_distribution(tiny_session):
    tiny_session.finetune(TEMPLATE, ROWS, "drawn", method="probe", l2=10.0)  # a strong penalty: soft probabilities
    result = tiny_session.compare("c: adapter drawn", ROWS, samples=20)
    condition = result.conditions[0]
    assert not condition.deterministic and len(condition.samples[0]) == 20
    assert condition.consistency < 1.0


def test_an_eval_label_the_classifier_never_saw_is_an_error(tiny_session):
    tiny_session.finetune(TEMPLATE, ROWS, "twolabels", method="probe")
    with pytest.raises(FtpeError, match="label 'neutral', which the classifier was not trained on"):
        tiny_session.compare("c: adapter twolabels", ROWS + [{"text": "fine", "label": "neutral"}])


@pytest.mark.parametrize("method", ["probe", "head"])
def test_a_label_without_training_examples_is_a_class_that_is_never_right(tiny_session, method):
    """A small draw of a many-label task (a curve's n=16 of 150 intents) lacks labels its validation split and
    the eval set have: the classifier has those classes, gets their examples wrong, and does not fail."""
    held_out = [{"text": "ok", "label": "neutral"}, {"text": "fine", "label": "neutral"}]
    adapter = tiny_session.finetune(TEMPLATE, ROWS, f"three-{method}", method=method, eval=held_out,
                                    **(HEAD if method == "head" else {}))
    assert adapter.head.label_set == ["negative", "neutral", "positive"] and adapter.best_metric == 0.0
    scored = tiny_session.compare(f"c: adapter three-{method}", ROWS + held_out).conditions[0]
    assert "neutral" not in scored.predictions[:len(ROWS)] and scored.scores[-2:] == [0.0, 0.0]


def test_probe_and_head_through_the_magics(shell, capsys):
    shell.user_ns["rows"] = ROWS
    ok = shell.run_cell("%%finetune --train rows --method probe --pool last --name p\n"
                        "Review: {text}\nSentiment: {label}")
    assert ok.success, ok.error_in_exec
    ok = shell.run_cell("%%finetune --train rows --method head --freeze-body --max-steps 4 --batch-size 8 --name h\n"
                        "Review: {text}\nSentiment: {label}")
    assert ok.success, ok.error_in_exec
    ok = shell.run_cell("%%compare --eval rows --out t\nprobe: adapter p\nhead: adapter h")
    assert ok.success, ok.error_in_exec
    table = shell.user_ns["t"].to_pandas()
    assert list(table["consistency"]) == [1.0, 1.0]
    from ftpe_magics.display.html import summary_html

    assert "1.0 by construction" in summary_html(shell.user_ns["t"])
