import pytest
import torch
from IPython.core.error import UsageError

from ftpe_magics import FtpeError, TrainingObserver, get_session

TEMPLATE = "Review: {text}\nSentiment: {label}"
ROWS = [{"text": t, "label": label} for t, label in [
    ("great fun", "positive"), ("so dull", "negative"), ("loved it", "positive"), ("awful film", "negative"),
    ("a joy", "positive"), ("boring", "negative"), ("superb", "positive"), ("a mess", "negative")]]
FAST = {"max_steps": 30, "batch_size": 4, "logging_steps": 1, "warmup": 0}
LR = {"lora": 2e-2, "full": 3e-3, "prompt-tuning": 1e-1, "ia3": 2e-1, "unfreeze": 3e-3}


def base_logits(session, text="Review: great fun\nSentiment:"):
    ids = session.tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        return session.base_model(**ids).logits.clone()


def mean_loss(records, first: bool, count: int = 5) -> float:
    losses = [r["loss"] for r in records if "loss" in r]
    chosen = losses[:count] if first else losses[-count:]
    return sum(chosen) / len(chosen)


@pytest.mark.parametrize("method", ["lora", "full", "prompt-tuning", "ia3", "unfreeze"])
def test_each_method_learns_and_leaves_the_base_intact(tiny_session, method):
    before = base_logits(tiny_session)
    adapter = tiny_session.finetune(TEMPLATE, ROWS, f"t-{method}", method=method, lr=LR[method], **FAST)
    assert mean_loss(adapter.history, first=False) < 0.7 * mean_loss(adapter.history, first=True)
    assert adapter.trainable_params > 0 and adapter.steps == 30 and adapter.interrupted_at is None
    assert tiny_session.active_adapter is None
    torch.testing.assert_close(base_logits(tiny_session), before)
    with tiny_session.using(adapter.name):
        assert tiny_session.model is not tiny_session.base_model
        assert tiny_session.prompt("Review: {text}", {"text": "ok"}, raw=True, max_new_tokens=2).outputs
    torch.testing.assert_close(base_logits(tiny_session), before)
    if method in ("lora", "prompt-tuning", "ia3"):
        assert adapter.trainable_params < tiny_session.parameter_count() / 2


@pytest.mark.parametrize("method", ["lora", "prompt-tuning", "full"])
def test_save_and_load_give_identical_logits(tiny_session, tmp_path, method):
    tiny_session.finetune(TEMPLATE, ROWS, f"rt-{method}", method=method, lr=LR[method], **{**FAST, "max_steps": 5})
    text = tiny_session.tokenizer("Review: so dull\nSentiment:", return_tensors="pt")
    with tiny_session.using(f"rt-{method}"), torch.no_grad():
        original = tiny_session.model(**text).logits.clone()
    path = tiny_session.save_adapter(f"rt-{method}", str(tmp_path / "saved"))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "staging folders must be gone"
    tiny_session.load_adapter(path, name=f"back-{method}")
    with tiny_session.using(f"back-{method}"), torch.no_grad():
        torch.testing.assert_close(tiny_session.model(**text).logits, original)
    assert tiny_session.adapters[f"back-{method}"].template.template == TEMPLATE


def test_keyboard_interrupt_from_an_observer_keeps_a_usable_adapter(tiny_session):
    class Interrupting(TrainingObserver):
        def step(self, step, tokens):
            if step == 3:
                raise KeyboardInterrupt

    adapter = tiny_session.finetune(TEMPLATE, ROWS, "interrupted", method="lora", lr=1e-2, observers=[Interrupting()],
                                    **FAST)
    assert adapter.interrupted_at == 3 and adapter.steps == 3
    assert "interrupted at step 3" in adapter.summary()["status"]
    with tiny_session.using("interrupted"):
        assert tiny_session.prompt("hello", raw=True, max_new_tokens=2).outputs
    assert tiny_session.loaded and tiny_session.model is tiny_session.base_model


def test_view_receives_every_logged_step_and_validation(tiny_session):
    adapter = tiny_session.finetune(TEMPLATE, ROWS, "watched", eval=ROWS[:4], method="lora", lr=1e-2,
                                    eval_steps=5, **{**FAST, "max_steps": 12})
    steps = [r["step"] for r in adapter.history if "loss" in r]
    assert steps == list(range(1, 13))
    evals = [r for r in adapter.history if "eval_accuracy" in r]
    assert [r["step"] for r in evals] == [5, 10, 12] and all(0 <= r["eval_accuracy"] <= 1 for r in evals)
    assert adapter.best_metric == max(r["eval_accuracy"] for r in evals)


def test_early_stopping_ends_training(tiny_session):
    adapter = tiny_session.finetune(TEMPLATE, ROWS, "early", eval=ROWS[:4], method="lora", lr=1e-9,
                                    eval_steps=1, early_stopping=2, **FAST)
    assert adapter.steps < 30


def test_bad_input_fails_before_training(tiny_session):
    count = len(tiny_session.adapters)
    with pytest.raises(FtpeError, match="no {label}: there is nothing to learn"):
        tiny_session.finetune("Review: {text}", ROWS, "x")
    with pytest.raises(FtpeError, match="needs at least 4"):
        tiny_session.finetune(TEMPLATE, ROWS[:2], "x")
    with pytest.raises(FtpeError, match="--lr must be above 0"):
        tiny_session.finetune(TEMPLATE, ROWS, "x", lr=0)
    with pytest.raises(FtpeError, match="--max-len 4 is shorter"):
        tiny_session.finetune(TEMPLATE, ROWS, "x", max_len=4)
    with pytest.raises(FtpeError, match="empty"):
        tiny_session.finetune(TEMPLATE, [], "x")
    assert len(tiny_session.adapters) == count


def test_finetune_and_adapter_magics_with_compare(shell, tmp_path, capsys):
    shell.user_ns["train_rows"] = ROWS
    ok = shell.run_cell("%%finetune --train train_rows --method lora --name mag --max-steps 6 --batch-size 4 "
                        "--lr 0.02\nReview: {text}\nSentiment: {label}")
    assert ok.success, ok.error_in_exec
    assert "Adapter 'mag'" in capsys.readouterr().out
    session = get_session()
    shell.run_line_magic("ftpe", "adapters")
    assert "lora" in capsys.readouterr().out
    shell.run_line_magic("ftpe", "use mag")
    assert session.active_adapter == "mag" and session.model is not session.base_model
    shell.run_line_magic("ftpe", "use base")
    assert session.model is session.base_model
    shell.run_line_magic("ftpe", f"save mag {tmp_path / 'mag'}")
    shell.run_line_magic("ftpe", f"load-adapter {tmp_path / 'mag'} --name mag2")
    ok = shell.run_cell("%%compare --eval train_rows --out table\nzero: prompt Review: {text}\\nSentiment:\n"
                        "tuned: adapter mag\nback: adapter mag2\nplain: base")
    assert ok.success, ok.error_in_exec
    table = shell.user_ns["table"].to_pandas().set_index("condition")
    assert table.loc["tuned", "trainable_params"] > 0 and table.loc["tuned", "train_seconds"] > 0
    assert table.loc["tuned", "accuracy"] == table.loc["back", "accuracy"]
    assert table.loc["zero", "trainable_params"] == 0
    shell.run_line_magic("ftpe", "delete mag2")
    assert "mag2" not in session.adapters
    bad = shell.run_cell("%ftpe use nosuch")
    assert isinstance(bad.error_in_exec, UsageError) and "No adapter named 'nosuch'" in str(bad.error_in_exec)


def test_a_failure_inside_training_leaves_the_base_model_clean(tiny_session, monkeypatch):
    before = base_logits(tiny_session)

    def broken_train(self, *args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("transformers.Trainer.train", broken_train)
    with pytest.raises(RuntimeError, match="disk full"):
        tiny_session.finetune(TEMPLATE, ROWS, "broken", method="lora", **FAST)
    assert "broken" not in tiny_session.adapters
    assert not any("lora" in name for name, _ in tiny_session.base_model.named_modules())
    torch.testing.assert_close(base_logits(tiny_session), before)
