"""Faults that must leave the user's work intact, one test (or more) per promise."""

from __future__ import annotations

import json
import math
import os
import signal
from pathlib import Path

import pytest
from IPython.core.error import UsageError

from ftpe_magics import FtpeError, Session, TrainingObserver, get_session
from ftpe_magics.engine.finetune.callbacks import Supervisor
from ftpe_magics.engine.model.loading import converted_folder

TEMPLATE = "Review: {text}\nSentiment: {label}"
ROWS = [{"text": t, "label": label} for t, label in [
    ("great fun", "positive"), ("so dull", "negative"), ("loved it", "positive"), ("awful film", "negative"),
    ("a joy", "positive"), ("boring", "negative"), ("superb", "positive"), ("a mess", "negative")]]
FAST = {"max_steps": 4, "batch_size": 4, "warmup": 0, "lr": 1e-2}


def _interrupt_forward_after(model, monkeypatch, calls_before: int) -> None:
    """The stop button, pressed during the ``calls_before + 1``-th forward pass."""
    real = model.forward
    count = {"n": 0}

    def forward(*args, **kwargs):
        count["n"] += 1
        if count["n"] == calls_before + 1:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(model, "forward", forward)


# -- 1. save never deletes or moves what it did not write -----------------------------------------------------
def test_save_replaces_only_an_earlier_save_of_ours(tiny_session, tmp_path):
    tiny_session.finetune(TEMPLATE, ROWS, "keep", **FAST)
    messages = []
    tiny_session.log = messages.append
    try:
        (tmp_path / "empty").mkdir()
        tiny_session.save_adapter("keep", str(tmp_path / "empty"))  # an empty folder is written into
        tiny_session.save_adapter("keep", str(tmp_path / "empty"))  # and an earlier save of ours replaced, said
        assert any("Replaced the adapter saved" in m for m in messages)
        assert (tmp_path / "empty" / "ftpe_adapter.json").is_file()
        (tmp_path / "empty" / "mine.txt").write_text("user's")
        with pytest.raises(FtpeError, match="already holds other files"):
            tiny_session.save_adapter("keep", str(tmp_path / "empty"))
        assert (tmp_path / "empty" / "mine.txt").read_text() == "user's"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]  # nothing set aside, no staging left
    finally:
        tiny_session.log = lambda message: None


# -- 2. an interrupted condition is marked, never scored silently -----------------------------------------------
def test_interrupted_generation_condition_is_marked_and_later_ones_not_run(tiny_session, monkeypatch):
    _interrupt_forward_after(tiny_session.model, monkeypatch, 3)
    messages = []
    monkeypatch.setattr(tiny_session, "log", messages.append)
    result = tiny_session.compare("gen: prompt Say: {text}\nlater: prompt Other: {text}", ROWS, metric="contains",
                                  max_new_tokens=6, batch_size=2)
    (condition,) = result.conditions
    assert condition.interrupted and math.isnan(condition.accuracy) and len(condition.outputs) == len(ROWS)
    table = result.to_pandas()
    assert bool(table["interrupted"][0]) and math.isnan(table["accuracy"][0])
    assert any("gen interrupted" in m and "not run: later" in m for m in messages)


def test_interrupted_fewshot_scoring_keeps_what_was_scored(tiny_session, monkeypatch):
    _interrupt_forward_after(tiny_session.model, monkeypatch, 2)
    result = tiny_session.fewshot(TEMPLATE, ROWS, ROWS, k=2, allow_overlap=True, batch_size=1)
    condition = result.conditions[0]
    assert condition.interrupted and math.isnan(condition.accuracy)
    assert 0 < sum(p != "" for p in condition.predictions) < len(ROWS)  # partial predictions kept


def test_interrupted_cot_is_marked(tiny_session, monkeypatch):
    _interrupt_forward_after(tiny_session.model, monkeypatch, 2)
    result = tiny_session.compare(r"c: cot Review: {text}\nAnswer positive or negative.", ROWS, max_new_tokens=4)
    assert result.conditions[0].interrupted


# -- 3. a failed load leaves everything as it was ---------------------------------------------------------------
def test_failed_load_keeps_model_and_adapters(tiny_session, tmp_path):
    tiny_session.finetune(TEMPLATE, ROWS, "stays", **FAST)
    model, key = tiny_session.base_model, tiny_session.loaded_model.load_id
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text('{"model_type": "llama", "vocab_size": "many"}')
    (tmp_path / "broken" / "model.safetensors").write_bytes(b"not weights")
    with pytest.raises(FtpeError, match="Could not load"):
        tiny_session.load(str(tmp_path / "broken"))
    assert tiny_session.base_model is model and tiny_session.loaded_model.load_id == key
    assert "stays" in tiny_session.adapters


# -- 4. best-state ties go to the lower loss, then the later step -----------------------------------------------
def test_best_state_ties_prefer_lower_loss_then_later_step():
    import threading

    from ftpe_magics.engine.finetune.validation import ValidationScore

    snapshots = iter(range(100))
    supervisor = Supervisor(TrainingObserver(), None, None, lambda: next(snapshots), threading.Event())
    for step, (accuracy, loss) in enumerate([(0.5, 0.9), (0.5, 0.7), (0.5, 0.7), (0.4, 0.1)], 1):
        supervisor.consider(step, ValidationScore(accuracy, loss, 10))
    assert supervisor.best == 0.5 and supervisor.best_state == 2  # step 3: tied accuracy and loss, the later one


# -- 5. a failed fine-tune leaves the base as it was ------------------------------------------------------------
def _base_state(session):
    base = session.base_model
    return (base.training, [p.requires_grad for p in base.parameters()], hasattr(base, "peft_config"),
            [name for name, _ in base.named_modules() if "lora" in name])


@pytest.mark.parametrize("failure", ["target-modules", "inside-training"])
def test_failed_finetune_leaves_the_base_unchanged(tiny_session, monkeypatch, failure):
    before = _base_state(tiny_session)
    if failure == "inside-training":
        monkeypatch.setattr("transformers.Trainer.train", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
        with pytest.raises(RuntimeError, match="boom"):
            tiny_session.finetune(TEMPLATE, ROWS, "bad", **FAST)
    else:
        with pytest.raises(FtpeError, match="no module named 'nope_proj'"):
            tiny_session.finetune(TEMPLATE, ROWS, "bad", target_modules="nope_proj", **FAST)
    assert _base_state(tiny_session) == before and "bad" not in tiny_session.adapters


# -- 7. silent wrong answers become errors or visible notices ----------------------------------------------------
def test_float_and_padded_labels_are_read_as_meant_and_said(tiny_session):
    import pandas as pd

    messages = []
    tiny_session.log = messages.append
    try:
        frame = pd.DataFrame({"text": ["a", "b", "c", "d"], "label": [1.0, 0.0, 1.0, 0.0]})
        data = tiny_session.examples(frame, "--train")
        assert data.label_set == ["0", "1"] and any("were floats" in m for m in messages)
        padded = tiny_session.examples([{"text": "a", "label": " pos"}, {"text": "b", "label": "pos "}], "--train")
        assert padded.label_set == ["pos"] and any("spaces around labels" in m for m in messages)
    finally:
        tiny_session.log = lambda message: None


def test_a_label_that_starts_another_is_warned_about(tiny_session):
    messages = []
    tiny_session.log = messages.append
    try:
        rows = [{"text": "x", "label": "good"}, {"text": "y", "label": "good enough"}]
        tiny_session.compare(r"z: prompt Review: {text}\nSentiment:", rows)
        assert any("'good' is the start of 'good enough'" in m and "--norm tokens" in m for m in messages)
    finally:
        tiny_session.log = lambda message: None


# -- 8. the converted-model cache is keyed by content ------------------------------------------------------------
def test_cache_folder_follows_the_files_content_not_its_name_and_size(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "m.gguf").write_bytes(b"GGUF" + b"\x01" * 100)
    (tmp_path / "b" / "m.gguf").write_bytes(b"GGUF" + b"\x02" * 100)
    assert converted_folder(tmp_path / "a" / "m.gguf", tmp_path) != converted_folder(tmp_path / "b" / "m.gguf",
                                                                                        tmp_path)


# -- 9. prompts longer than the model's context --------------------------------------------------------------------
def test_truncate_cuts_a_long_prompt_and_says_so(tiny_session):
    messages = []
    tiny_session.log = messages.append
    try:
        result = tiny_session.prompt("{text}", {"text": "great film " * 3000}, truncate=True, max_new_tokens=2,
                                     raw=True)
        assert result.prompt_tokens[0] == 4096 - 2 and any("Cut 1 prompt(s)" in m for m in messages)
    finally:
        tiny_session.log = lambda message: None


# -- 10. saved adapters hold no path of this machine; another base is refused at load ----------------------------
def test_saved_adapter_names_the_model_not_a_path_and_checks_its_base(tiny_session, tmp_path):
    tiny_session.finetune(TEMPLATE, ROWS, "portable", **FAST)
    folder = Path(tiny_session.save_adapter("portable", str(tmp_path / "portable")))
    for file in folder.iterdir():
        if file.suffix == ".json":
            text = file.read_text()
            assert str(tmp_path.parent) not in text and str(Path.home()) not in text and "/tmp/" not in text
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == tiny_session.source.model_id
    meta = json.loads((folder / "ftpe_adapter.json").read_text())
    assert meta["base_fingerprint"] == tiny_session.loaded_model.fingerprint
    meta["base_fingerprint"] = "0" * 16
    (folder / "ftpe_adapter.json").write_text(json.dumps(meta))
    with pytest.raises(FtpeError, match="trained on tiny-model.*not the model loaded"):
        tiny_session.load_adapter(str(folder), name="elsewhere")


# -- 11. the stop button stops within a step and skips the validation it interrupts -------------------------------
def test_stop_button_skips_the_scheduled_validation(tiny_session):
    class PressStop(TrainingObserver):
        def step(self, step, tokens):
            if step == 3:
                os.kill(os.getpid(), signal.SIGINT)

    adapter = tiny_session.finetune(TEMPLATE, ROWS, "stopped", eval=ROWS[:4], eval_steps=3, observers=[PressStop()],
                                    **{**FAST, "max_steps": 12})
    assert adapter.interrupted_at == 3 and adapter.steps == 3
    assert [r["step"] for r in adapter.history if "eval_accuracy" in r] == []


# -- 6. an unexpected error is one line, with the traceback on request ------------------------------------------
def test_unexpected_error_is_one_line_and_debug_shows_it(shell, monkeypatch, capsys):
    shell.run_cell_magic("prompt", "--max-new-tokens 1", "hi")  # the model is loaded before the failure
    prompts_before = len(get_session().history)
    monkeypatch.setattr(Session, "prompt", lambda *a, **k: (_ for _ in ()).throw(ZeroDivisionError("bad luck")))
    result = shell.run_cell("%%prompt\nhi")
    assert isinstance(result.error_in_exec, UsageError)
    assert "ZeroDivisionError: bad luck" in str(result.error_in_exec) and "%ftpe debug" in str(result.error_in_exec)
    capsys.readouterr()
    shell.run_line_magic("ftpe", "debug")
    assert "Traceback" in capsys.readouterr().out
    assert get_session().loaded  # the session survived the unexpected error with its model
    monkeypatch.undo()
    shell.run_cell_magic("prompt", "--max-new-tokens 1", "hi")  # and the magics work again at once
    assert len(get_session().history) == prompts_before + 1


# -- round 3: saves that delete, secrets that print, searches and comparisons that lose work ---------------------
def test_a_save_never_replaces_a_file_it_did_not_write(tiny_session, tmp_path):
    tiny_session.finetune(TEMPLATE, ROWS, "keep", **FAST)
    out = tmp_path / "out"
    tiny_session.save_adapter("keep", str(out))
    tiny_session.save_adapter("keep", str(out))  # only what the first save wrote: replaced
    (out / "README.md").write_text("my own notes")  # the user's file, under a name a save also writes
    with pytest.raises(FtpeError, match=r"already holds other files \(README\.md\)"):
        tiny_session.save_adapter("keep", str(out))
    assert (out / "README.md").read_text() == "my own notes"
    (out / "README.md").unlink()
    (out / "notes.txt").write_text("mine")  # a file the manifest does not list
    with pytest.raises(FtpeError, match="notes.txt"):
        tiny_session.save_adapter("keep", str(out))
    assert (out / "notes.txt").read_text() == "mine"


def test_an_unreachable_tracking_server_is_said_once_without_its_password(tiny_session, monkeypatch):
    messages = []
    monkeypatch.setattr(tiny_session, "log", messages.append)
    monkeypatch.setattr(tiny_session.config, "mlflow_uri", "http://user:SECRET@127.0.0.1:9")
    tiny_session.finetune(TEMPLATE, ROWS, "tracked", **FAST)
    tiny_session.compare("zero: prompt Review: {text}\\nSentiment:", ROWS)
    said = [m for m in messages if "MLflow" in m]
    assert len(said) == 1 and "tracking is off for this session" in said[0]
    assert "http://***@127.0.0.1:9" in said[0]
    assert not any("SECRET" in m for m in messages)
    assert "tracked" in tiny_session.adapters


def test_the_stop_button_while_tracking_keeps_the_result(tiny_session, monkeypatch):
    from ftpe_magics.engine.persistence import mlflow_tracking as tracking

    class Stopped:
        def __init__(self, uri):
            pass

        def finetune(self, *args, **kwargs):
            raise KeyboardInterrupt

    messages = []
    monkeypatch.setattr(tiny_session, "log", messages.append)
    monkeypatch.setattr(tracking, "MlflowTracker", Stopped)
    monkeypatch.setattr(tiny_session.config, "mlflow_uri", "sqlite:///stopped.db")
    adapter = tiny_session.finetune(TEMPLATE, ROWS, "kept-anyway", **FAST)
    assert tiny_session.adapters["kept-anyway"] is adapter
    assert any("MLflow" in m and "stopped" in m for m in messages)


def _stop_scoring_at(monkeypatch, call: int, error: BaseException) -> list:
    """The stop button (or ``error``) at the ``call``-th few-shot scoring pass; returns the calls seen."""
    from ftpe_magics.engine.evaluation.evaluator import Evaluator

    original, calls = Evaluator.fewshot, []

    def scoring(self, condition, config, k=None):
        calls.append(condition)
        if len(calls) == call:
            raise error
        return original(self, condition, config, k)

    monkeypatch.setattr(Evaluator, "fewshot", scoring)
    return calls


@pytest.mark.parametrize("where", ["between candidates", "inside a forward pass"])
def test_a_stopped_prompt_search_keeps_the_best_so_far_and_says_so(tiny_session, monkeypatch, where):
    from fewshot_data import EVAL, POOL

    messages = []
    monkeypatch.setattr(tiny_session, "log", messages.append)
    if where == "between candidates":
        _stop_scoring_at(monkeypatch, 3, KeyboardInterrupt())
    else:
        from ftpe_magics.engine.evaluation.evaluator import ConditionResult, Evaluator

        original, calls = Evaluator.fewshot, []

        def interrupted(self, condition, config, k=None):
            calls.append(condition)
            result: ConditionResult = original(self, condition, config, k)
            result.interrupted = result.interrupted or len(calls) == 3
            return result

        monkeypatch.setattr(Evaluator, "fewshot", interrupted)
    result = tiny_session.fewshot(TEMPLATE, POOL, EVAL, search=5, search_k="1,2", cv=1)  # one pass per candidate
    assert [row["candidate"] for row in result.search_log] == [0, 1]
    assert sum(row["best"] for row in result.search_log) == 1
    assert not result.conditions[0].interrupted and result.conditions[0].n == len(EVAL)  # the best was used
    assert any("Search stopped after 2 of 5 candidates" in m for m in messages)


def test_a_candidate_too_long_for_the_context_is_skipped(tiny_session, monkeypatch):
    from fewshot_data import EVAL, POOL

    from ftpe_magics.engine.errors import ContextTooLong

    messages = []
    monkeypatch.setattr(tiny_session, "log", messages.append)
    _stop_scoring_at(monkeypatch, 2, ContextTooLong("Example 0's prompt is 9000 tokens"))
    result = tiny_session.fewshot(TEMPLATE, POOL, EVAL, search=4, search_k="1,2", k=1, cv=1)
    statuses = [row["status"] for row in result.search_log]
    assert statuses == ["scored", "too long", "scored", "scored"]
    assert not result.search_log[1]["best"]
    assert any("skipped 1 candidate(s) whose prompt is longer" in m for m in messages)


def test_a_failing_condition_keeps_the_ones_that_finished(tiny_model_dir, tmp_path):
    said = []
    session = Session(log=said.append)
    session.config.cache_dir, session.config.store = str(tmp_path / "cache"), str(tmp_path / "runs.sqlite")
    session.load(str(tiny_model_dir))
    session.fewshot(TEMPLATE, ROWS, ROWS, name="fsx", k=1, allow_overlap=True)
    body = "z2: prompt Review: {text}\\nSentiment:\nfs: fewshot fsx k=99"
    with pytest.raises(FtpeError, match="--k 99 is more than"):
        session.compare(body, ROWS)
    said.clear()
    again = session.compare("z2: prompt Review: {text}\\nSentiment:", ROWS)
    assert any(m.startswith("z2: cached from run") for m in said)
    assert again.conditions[0].n == len(ROWS)


def test_loading_or_training_an_adapter_keeps_the_active_one(tiny_session, tmp_path):
    tiny_session.finetune(TEMPLATE, ROWS, "keep", **FAST)
    tiny_session.finetune(TEMPLATE, ROWS, "other", **FAST)
    tiny_session.save_adapter("other", str(tmp_path / "other"))
    tiny_session.use("keep")
    try:
        tiny_session.load_adapter(str(tmp_path / "other"), "other-again")
        assert tiny_session.active_adapter == "keep"
        tiny_session.finetune(TEMPLATE, ROWS, "third", **FAST)
        assert tiny_session.active_adapter == "keep"
        messages = []
        tiny_session.log = messages.append
        tiny_session.finetune(TEMPLATE, ROWS, "keep", **FAST)  # replaces the active adapter itself: said
        assert tiny_session.active_adapter is None
        assert any("was active and is replaced" in m for m in messages)
    finally:
        tiny_session.log = lambda message: None
        tiny_session.use("base")


def test_a_store_path_that_is_a_folder_says_it_must_be_a_file(tiny_session, tmp_path, monkeypatch):
    monkeypatch.setattr(tiny_session.config, "store", str(tmp_path))
    with pytest.raises(FtpeError, match="is a folder, not a file"):
        tiny_session.history_table()


def test_history_since_a_date_and_time_works_unquoted(shell, capsys):
    result = shell.run_cell("%ftpe history --since 2026-12-02 23:59")
    assert result.error_in_exec is None, result.error_in_exec


def test_identical_samples_are_stored_once():
    from ftpe_magics.engine.persistence.records import pack_samples, unpack_samples

    long_text = "the same long answer " * 50
    samples = [[long_text] * 100, [long_text, "other", long_text]]
    packed = pack_samples(samples)
    assert packed["texts"] == [long_text, "other"]
    assert unpack_samples(packed) == samples
    assert unpack_samples(samples) == samples  # as 0.3.0 stored them
    assert len(json.dumps(packed)) < len(json.dumps(samples)) / 50


def test_no_message_shows_a_uri_password():
    from ftpe_magics.engine.errors import mask_credentials

    assert mask_credentials("at http://user:SECRET@host:5000/x and https://tok@h") == \
        "at http://***@host:5000/x and https://***@h"
    assert mask_credentials("sqlite:///mlflow.db") == "sqlite:///mlflow.db"


def test_a_comparison_that_trains_keeps_the_active_adapter(tiny_session):
    tiny_session.finetune(TEMPLATE, ROWS, "keep", **FAST)
    tiny_session.use("keep")
    try:
        pool = [{"text": f"other {row['text']}", "label": row["label"]} for row in ROWS]
        tiny_session.compare("ft: finetune lora max-steps=2 batch-size=4 Review: {text}\\nSentiment: {label}",
                             ROWS, train=pool)
        assert tiny_session.active_adapter == "keep"
    finally:
        tiny_session.use("base")
