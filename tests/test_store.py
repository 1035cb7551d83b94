"""The run store: runs, the result cache and adapters outlive the session that made them."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from IPython.utils.capture import capture_output

from ftpe_magics import Session
from ftpe_magics.engine.errors import FtpeError
from ftpe_magics.engine.evaluation import evaluator as evaluation
from ftpe_magics.engine.persistence.store import SCHEMA_VERSION, RunStore

TEMPLATE = "Review: {text}\nSentiment: {label}"
TRAIN = [{"text": t, "label": lab} for t, lab in [
    ("great fun", "positive"), ("so dull", "negative"), ("loved it", "positive"), ("awful film", "negative"),
    ("a joy", "positive"), ("boring", "negative"), ("superb", "positive"), ("a mess", "negative")]] * 2
EVAL = [{"text": t, "label": lab} for t, lab in [
    ("what a film", "positive"), ("dreadful", "negative"), ("charming", "positive"), ("tedious", "negative"),
    ("brilliant", "positive"), ("weak", "negative")]]
CONDITIONS = ("zero: prompt {instr} Review: {text}\\nSentiment:\n"
              "sampled: prompt Review: {text}\\nSentiment:\nfs: fewshot fs")
REPO = Path(__file__).resolve().parents[1]


def session_on(store: Path, model_dir: Path, cache: Path, log=None) -> Session:
    session = Session(log=log or (lambda message: None))
    session.config.cache_dir, session.config.store, session.config.max_new_tokens = str(cache), str(store), 4
    return session.load(str(model_dir))


@pytest.fixture
def store_path(tmp_path) -> Path:
    return tmp_path / "store" / "runs.sqlite"


def _outcome(result) -> list:
    return [(c.condition, c.predictions, c.scores, c.samples) for c in result.conditions]


def test_a_cached_comparison_equals_a_fresh_one_both_ways(tiny_model_dir, tmp_path, store_path):
    said: list[str] = []
    session = session_on(store_path, tiny_model_dir, tmp_path / "cache", said.append)
    namespace = {"instr": "Classify."}
    session.fewshot(TEMPLATE, TRAIN, EVAL, name="fs", k=2, select="similar")
    fresh = session.compare(CONDITIONS, EVAL, namespace=namespace, samples=3, seed=7)
    said.clear()
    cached = session.compare(CONDITIONS, EVAL, namespace=namespace, samples=3, seed=7)
    assert [line.split(":")[0] for line in said if "cached from run" in line] == ["zero", "sampled", "fs"]
    forced = session.compare(CONDITIONS, EVAL, namespace=namespace, samples=3, seed=7, no_cache=True)
    assert _outcome(fresh) == _outcome(cached) == _outcome(forced)
    assert fresh.to_pandas()["accuracy"].tolist() == cached.to_pandas()["accuracy"].tolist()
    said.clear()  # anything a result depends on changes the key: a notebook variable, the data, the seed
    session.compare(CONDITIONS, EVAL, namespace={"instr": "Judge."}, samples=3, seed=7)
    assert [line.split(":")[0] for line in said if "cached" in line] == ["sampled", "fs"]
    said.clear()
    session.compare(CONDITIONS, EVAL[:5], namespace=namespace, samples=3, seed=7)
    session.compare(CONDITIONS, EVAL, namespace=namespace, samples=3, seed=8)
    assert not [line for line in said if "cached" in line]


def test_history_show_and_rerun_diffs_come_back_in_a_new_session(tiny_model_dir, tmp_path, store_path):
    first = session_on(store_path, tiny_model_dir, tmp_path / "cache")
    first.prompt("Say {word}", {"word": "hello"}, name="greet")
    fewshot = first.fewshot(TEMPLATE, TRAIN, EVAL, name="fs", k=2)
    table = first.compare("zero: prompt Review: {text}\\nSentiment:\nfs: fewshot fs", EVAL)
    first.finetune(TEMPLATE, TRAIN, "lora1", eval=EVAL, max_steps=4, eval_steps=2, batch_size=4)
    second = session_on(store_path, tiny_model_dir, tmp_path / "cache")  # a new kernel: nothing in memory
    history = second.history_table()
    assert history["kind"].tolist() == ["finetune", "compare", "fewshot", "prompt"]
    assert second.history_table(kind="prompt")["name"].tolist() == ["greet"]
    assert len(second.history_table(name="nosuch")) == 0 and len(second.history_table(since="1h")) == 4
    ids = dict(zip(history["kind"], history["id"], strict=True))
    shown = second.show(int(ids["compare"]))
    assert _outcome(shown) == _outcome(table) and shown.eval_texts == table.eval_texts
    assert _outcome(second.show(int(ids["fewshot"]))) == _outcome(fewshot)
    training = second.show(int(ids["finetune"]))
    assert training.summary()["steps"] == 4 and any("eval_accuracy" in r for r in training.history)
    rerun = second.prompt("Say {word}!", {"word": "hello"}, name="greet")
    assert rerun.previous is not None and rerun.changed_settings()["template"] == ("Say {word}", "Say {word}!")


def test_adapters_are_on_disk_listed_loaded_on_demand_and_deleted(tiny_model_dir, tmp_path, store_path):
    first = session_on(store_path, tiny_model_dir, tmp_path / "cache")
    trained = first.finetune(TEMPLATE, TRAIN, "lora1", eval=EVAL, max_steps=4, eval_steps=2, batch_size=4)
    before = first.compare("a: adapter lora1", EVAL)
    second = session_on(store_path, tiny_model_dir, tmp_path / "cache")
    listed = second.adapters_table()
    assert listed["name"].tolist() == ["lora1"] and listed["status"].tolist() == ["finished"]
    assert not Path(listed["folder"][0]).is_absolute()
    after = second.compare("a: adapter lora1", EVAL, no_cache=True)  # read from disk on first use
    assert _outcome(after) == _outcome(before)
    assert second.adapter("lora1").best_metric == trained.best_metric
    folder = store_path.parent / listed["folder"][0]
    assert (folder / "adapter_model.safetensors").is_file()
    assert second.delete_adapter("lora1") == ["the session", str(Path(str(store_path)).parent / listed["folder"][0])]
    assert not folder.exists() and len(second.adapters_table()) == 0


CACHED_LINES = "zero: prompt Review: {text}\\nSentiment:\na: adapter lora1"


def _new_kernel(store: Path, model_dir: Path, cache: Path, said: list) -> Session:
    """A session as a new kernel starts it: nothing loaded, the model named only by the config."""
    session = Session(log=said.append)
    session.config.cache_dir, session.config.store, session.config.max_new_tokens = str(cache), str(store), 4
    session.config.default_model = str(model_dir)
    return session


def _never_read(*args, **kwargs):
    raise AssertionError("the adapter's weights were read")


def test_a_new_kernel_reads_a_fully_cached_comparison_without_loading_the_model_or_the_adapter(
        tiny_model_dir, tmp_path, store_path, monkeypatch):
    first = session_on(store_path, tiny_model_dir, tmp_path / "cache")
    first.finetune(TEMPLATE, TRAIN, "lora1", eval=EVAL, max_steps=4, eval_steps=2, batch_size=4)
    before = first.compare(CACHED_LINES, EVAL)
    monkeypatch.setattr("ftpe_magics.engine.persistence.recorder.load_adapter", _never_read)
    said: list[str] = []
    second = _new_kernel(store_path, tiny_model_dir, tmp_path / "cache", said)
    cached = second.compare(CACHED_LINES, EVAL)
    assert not second.loaded and _outcome(cached) == _outcome(before)
    assert cached.model_params == before.model_params > 0
    assert [line.split(":")[0] for line in said if "cached from run" in line] == ["zero", "a"]
    assert second.history_table()["kind"].tolist()[0] == "compare"  # recorded like any comparison
    # one line the store has not seen: the model is loaded for it; the adapter line is still read back unread
    said.clear()
    more = second.compare(CACHED_LINES + "\nnew: prompt Text: {text}\\nSentiment:", EVAL)
    assert second.loaded and [c.condition for c in more.conditions] == ["zero", "a", "new"]
    assert [line.split(":")[0] for line in said if "cached from run" in line] == ["zero", "a"]


def test_changed_model_files_or_an_edited_adapter_are_loaded_not_trusted(tiny_model_dir, tmp_path, store_path):
    import shutil

    from safetensors.torch import load_file, save_file

    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    first = session_on(store_path, model_dir, tmp_path / "cache")
    first.finetune(TEMPLATE, TRAIN, "lora1", eval=EVAL, max_steps=4, eval_steps=2, batch_size=4)
    before = first.compare(CACHED_LINES, EVAL)
    weights = next(model_dir.glob("*.safetensors"))
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))  # rewritten, same bytes
    said: list[str] = []
    second = _new_kernel(store_path, model_dir, tmp_path / "cache", said)
    again = second.compare(CACHED_LINES, EVAL)
    assert second.loaded and _outcome(again) == _outcome(before)  # loaded to check: the same weights, still hits
    assert len([line for line in said if "cached from run" in line]) == 2
    folder = store_path.parent / second.adapters_table()["folder"][0]
    state = load_file(str(folder / "adapter_model.safetensors"))
    save_file({key: value + 0.5 for key, value in state.items()}, str(folder / "adapter_model.safetensors"))
    said.clear()
    third = _new_kernel(store_path, model_dir, tmp_path / "cache", said)
    third.compare(CACHED_LINES, EVAL)  # the adapter line scored again, with the edited weights
    assert third.loaded and [line.split(":")[0] for line in said if "cached from run" in line] == ["zero"]


def test_pool_embeddings_are_kept_in_the_store(tiny_model_dir, tmp_path, store_path, monkeypatch):
    session_on(store_path, tiny_model_dir, tmp_path / "cache").fewshot(TEMPLATE, TRAIN, EVAL, k=2, select="similar")
    calls = []
    real = evaluation.mean_pooled_embeddings
    monkeypatch.setattr(evaluation, "mean_pooled_embeddings", lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    second = session_on(store_path, tiny_model_dir, tmp_path / "cache")
    second.fewshot(TEMPLATE, TRAIN, EVAL, k=3, select="similar")  # another k: not a cached run, same pool
    assert calls == []


_KILLED_CHILD = """
import sys
from ftpe_magics import Session
train, val = {train!r}, {val!r}
session = Session()
session.config.cache_dir, session.config.store = {cache!r}, {store!r}
session.load({model!r})
session.finetune("Review: {{text}}\\nSentiment: {{label}}", train, "slow", eval=val, max_steps=100000, eval_steps=1,
                 batch_size=4, lr=3e-3)
"""


@pytest.mark.multiprocess
def test_a_killed_kernel_leaves_its_best_adapter_on_disk(tiny_model_dir, tmp_path, store_path):
    script = _KILLED_CHILD.format(train=TRAIN, val=EVAL, cache=str(tmp_path / "cache"), store=str(store_path),
                                  model=str(tiny_model_dir))
    child = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": str(REPO)},
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and child.poll() is None:
            folders = list((store_path.parent / "adapters").glob("*/slow/ftpe_adapter.json"))
            if folders and json.loads(folders[0].read_text())["steps"] >= 3:
                break
            time.sleep(0.2)
        assert child.poll() is None, child.stderr.read().decode()[-2000:]
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    finally:
        if child.poll() is None:
            child.kill()
    session = session_on(store_path, tiny_model_dir, tmp_path / "cache")
    row = session.adapters_table().iloc[0]
    step = int(row["status"].rsplit(" ", 1)[1])
    assert row["status"] == f"kernel died after step {step}" and step >= 3
    scored = session.compare("a: adapter slow", EVAL)
    assert scored.conditions[0].accuracy == pytest.approx(row["best_val_accuracy"])


_WRITER = """
import sys
from ftpe_magics.engine.persistence.store import RunStore
store = RunStore(sys.argv[1])
for index in range({count}):
    store.add_run("prompt", {{"model": "m", "writer": sys.argv[2]}}, {{"outputs": [["x" * 200]]}}, name=sys.argv[2])
"""


def test_two_kernels_write_at_once_and_lose_nothing(store_path):
    count = 300
    RunStore(store_path).close()
    writers = [subprocess.Popen([sys.executable, "-c", _WRITER.format(count=count), str(store_path), name],
                                env={**os.environ, "PYTHONPATH": str(REPO)}, stderr=subprocess.PIPE)
               for name in ("a", "b")]
    errors = [writer.communicate(timeout=300)[1].decode() for writer in writers]
    assert [writer.returncode for writer in writers] == [0, 0], errors
    store = RunStore(store_path)
    assert len(store.runs(("prompt",), name="a")) == len(store.runs(("prompt",), name="b")) == count


def _broken_store(kind: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "not-a-database":
        path.write_bytes(b"these are my notes, not a database" * 100)
    elif kind == "newer-schema":
        with sqlite3.connect(path) as connection:
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")


@pytest.mark.parametrize("kind, expected", [("not-a-database", "is not a SQLite database"),
                                            ("newer-schema", "was written by a newer ftpe_magics")])
def test_a_bad_store_file_is_one_line_and_the_magics_go_on(shell, capsys, tmp_path, kind, expected):
    from test_bad_inputs import assert_survives

    from ftpe_magics import get_session

    path = tmp_path / "work" / "runs.sqlite"
    _broken_store(kind, path)
    original = path.read_bytes()
    session = get_session()
    session.config.store = str(path)
    try:
        shell.run_line_magic("ftpe", "load")
        capsys.readouterr()
        result = shell.run_cell("%%prompt --max-new-tokens 2\nhello")  # runs, and says once why nothing is kept
        notices = [line for line in capsys.readouterr().out.splitlines() if expected in line]
        assert result.error_in_exec is None
        assert len(notices) == 1 and str(path) in notices[0] and "Ftpe.store" in notices[0]
        assert_survives(shell, capsys, tmp_path / "work", "%ftpe history", expected)
        assert path.read_bytes() == original  # the user's file is never replaced
    finally:
        session.config.store = ""


def _make_read_only(path: Path) -> list[str]:
    """chmod for a user; root writes through chmod, so for root the file is made immutable (chattr +i)."""
    if os.geteuid() != 0:
        path.chmod(0o444)
        path.parent.chmod(0o555)
        return []
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("running as root on a file system without chattr +i: a read-only file cannot be made")
    return ["chattr", "-i", str(path)]


def test_a_read_only_store_is_one_line(store_path):
    RunStore(store_path).close()
    undo = _make_read_only(store_path)
    try:
        with pytest.raises(FtpeError) as raised:
            RunStore(store_path)
    finally:
        subprocess.run(undo, check=True) if undo else store_path.parent.chmod(0o755)
    message = str(raised.value)
    assert "\n" not in message and "is read-only" in message and "Ftpe.store" in message


def test_the_store_keeps_no_machine_paths_or_secrets(tiny_model_dir, tmp_path, store_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secretvalue123456")
    session = session_on(store_path, tiny_model_dir, tmp_path / "cache")
    session.prompt("Say {word}", {"word": "hello"}, name="greet")
    session.fewshot(TEMPLATE, TRAIN, EVAL, name="fs", k=2)
    session.finetune(TEMPLATE, TRAIN, "lora1", eval=EVAL, max_steps=2, batch_size=4)
    with sqlite3.connect(store_path) as connection:
        dump = "\n".join(connection.iterdump())
    for folder in session.adapters_table()["folder"]:
        dump += "\n".join(p.read_text(errors="ignore") for p in (store_path.parent / folder).glob("*.json"))
    assert "lora1" in dump and "greet" in dump
    for private in (str(tmp_path), str(tiny_model_dir), str(Path.home()), str(REPO), "hf_secretvalue123456"):
        assert private not in dump


def test_every_finetune_and_comparison_is_an_mlflow_run(tiny_model_dir, tmp_path, store_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)  # MLflow writes artifacts beside the working folder
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    session = session_on(store_path, tiny_model_dir, tmp_path / "cache")
    session.config.mlflow_uri = uri
    adapter = session.finetune(TEMPLATE, TRAIN, "lora1", eval=EVAL, max_steps=4, eval_steps=2, batch_size=4,
                               logging_steps=1)
    result = session.compare("zero: prompt Review: {text}\\nSentiment:\na: adapter lora1", EVAL)
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("ftpe_magics")
    runs = {run.info.run_name: run for run in client.search_runs([experiment.experiment_id])}
    trained = runs["lora1"]
    assert trained.data.params["method"] == "lora" and trained.data.params["max_steps"] == "4"
    losses = client.get_metric_history(trained.info.run_id, "loss")
    assert sorted(m.step for m in losses) == [r["step"] for r in adapter.history if "loss" in r]
    assert "adapter/adapter_model.safetensors" in [f.path for f in client.list_artifacts(trained.info.run_id,
                                                                                          "adapter")]
    parent = runs["compare"]
    children = [run for run in runs.values() if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    accuracy = {run.info.run_name: run.data.metrics["accuracy"] for run in children}
    assert accuracy == {c.condition: pytest.approx(c.accuracy) for c in result.conditions}


def test_ftpe_show_redisplays_each_kind_in_its_own_view(shell, capsys, tmp_path):
    from ftpe_magics import get_session

    session = get_session()
    session.config.store = str(tmp_path / "runs.sqlite")
    shell.user_ns.update(train=TRAIN, held_out=EVAL)
    try:
        shell.run_cell("%%fewshot --train train --eval held_out --sweep-k 0,2 --name fs\nReview: {text}\nSentiment: "
                       "{label}")
        shell.run_cell("%%finetune --train train --eval held_out --name t --max-steps 2 --eval-steps 1 "
                       "--batch-size 4\nReview: {text}\nSentiment: {label}")
        runs = session.history_table()
        ids = dict(zip(runs["kind"], runs["id"], strict=True))
        views = {}
        for kind in ("fewshot", "finetune"):
            with capture_output() as captured:
                assert shell.run_cell(f"%ftpe show {ids[kind]} --out shown_{kind}").error_in_exec is None
            views[kind] = "".join(output.data.get("text/html", "") for output in captured.outputs)
        assert 'alt="accuracy against k"' in views["fewshot"]  # the k sweep's own report, as %%fewshot showed it
        assert 'alt="training curves"' in views["finetune"] and "ftpe-finetune-summary" in views["finetune"]
        assert [c.condition for c in shell.user_ns["shown_fewshot"].conditions] == ["fs k=0", "fs k=2"]
        assert shell.user_ns["shown_finetune"].summary()["steps"] == 2
    finally:
        session.config.store = ""
