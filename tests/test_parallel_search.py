"""%%finetune --search N --nproc K: trials trained K at a time in worker processes sharing one Optuna study (a
journal file), with the kernel's rules for the first trial, pruning, the stop and the best adapter."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from ftpe_magics import FtpeError, Session
from ftpe_magics.engine.finetune.options import FinetuneOptions
from ftpe_magics.engine.finetune.search import optuna_module
from ftpe_magics.engine.finetune.space import search_space, starting_point
from ftpe_magics.engine.workers.jobs import STOP
from ftpe_magics.engine.workers.search_files import STUDY_NAME, journal_storage
from ftpe_magics.engine.workers.search_launcher import _chosen
from ftpe_magics.engine.workers.search_worker import claim_trial

TEMPLATE = "Review: {text}\nSentiment: {label}"
ROWS = [{"text": t, "label": label} for t, label in [
    ("great fun", "positive"), ("so dull", "negative"), ("loved it", "positive"), ("awful film", "negative"),
    ("a joy", "positive"), ("boring", "negative"), ("superb", "positive"), ("a mess", "negative")]] * 2
SEARCH = {"search": 3, "max_steps": 4, "batch_size": 4, "eval_steps": 2, "warmup": 0, "lr": 1e-2, "rank": 4,
          "space": "lr=1e-3:5e-2 rank=2,4"}


def _study(folder: Path):
    optuna = optuna_module()
    study = optuna.create_study(study_name=STUDY_NAME, storage=journal_storage(folder), direction="maximize")
    options = FinetuneOptions(search=4)
    study.enqueue_trial(starting_point(options, search_space(options)))
    return optuna.load_study(study_name=STUDY_NAME, storage=journal_storage(folder))


def test_workers_together_never_claim_more_trials_than_asked(tmp_path):
    study = _study(tmp_path)
    space = search_space(FinetuneOptions())
    claimed: dict[int, dict] = {}

    def worker() -> None:
        mine = optuna_module().load_study(study_name=STUDY_NAME, storage=journal_storage(tmp_path))
        while (trial := claim_trial(mine, tmp_path, 4)) is not None:
            claimed[trial.number] = {dimension.name: dimension.suggest(trial) for dimension in space}

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == [0, 1, 2, 3] and len(study.trials) == 4
    assert claimed[0] == starting_point(FinetuneOptions(search=4), space)  # the first trial: the settings as given


def test_a_stop_file_ends_the_claims(tmp_path):
    study = _study(tmp_path)
    assert claim_trial(study, tmp_path, 4) is not None
    (tmp_path / STOP).touch()
    assert claim_trial(study, tmp_path, 4) is None


def _row(trial: int, state: str, accuracy: float | None, kept: bool = True) -> dict:
    return {"trial": trial, "state": state, "val_accuracy": accuracy, "kept": kept}


def test_the_choice_is_the_kernels_rule():
    rows = [_row(0, "complete", 0.75), _row(1, "pruned", None, kept=False), _row(2, "complete", 0.875),
            _row(3, "complete", 0.875), _row(4, "stopped", 1.0)]
    assert _chosen(rows) == 2  # the best finished trial, the earlier on a tie; a stopped one never beats it
    assert _chosen([_row(0, "pruned", None, kept=False), _row(1, "stopped (budget)", 0.5)]) == 1
    assert _chosen([_row(0, "pruned", None, kept=False)]) is None


@pytest.fixture
def session(tiny_model_dir, tmp_path) -> Session:
    session = Session(log=lambda message: None)
    session.config.cache_dir, session.config.jobs_dir = str(tmp_path / "cache"), str(tmp_path / "jobs")
    return session.load(str(tiny_model_dir))


@pytest.mark.multiprocess
def test_two_workers_share_one_study_and_the_best_adapter_comes_back(session, tmp_path):
    ids = session.tokenizer("Review: great fun\nSentiment:", return_tensors="pt")
    with torch.no_grad():
        before = session.base_model(**ids).logits.clone()
    said: list[str] = []
    session.log = said.append
    adapter = session.finetune(TEMPLATE, ROWS, "searched", nproc=2, **SEARCH)
    rows = adapter.search_log
    assert sorted(row["trial"] for row in rows) == [0, 1, 2]  # three trials in all, each run once
    assert {row["worker"] for row in rows} <= {0, 1}
    assert rows[0]["lr"] == 1e-2 and rows[0]["rank"] == 4  # the first trial is the settings as given
    finished = [row for row in rows if row["state"] == "complete"]
    kept = next(row for row in rows if row["best"])
    assert kept["val_accuracy"] == adapter.best_metric == max(row["val_accuracy"] for row in finished)
    assert adapter.history and adapter.interrupted_at is None and "searched" in session.adapters
    assert len([line for line in said if line.startswith("Search: trial")]) == 3
    with torch.no_grad():
        torch.testing.assert_close(session.base_model(**ids).logits, before)
    scored = session.compare("a: adapter searched", ROWS[:4])
    assert scored.conditions[0].n == 4
    assert not list((tmp_path / "jobs").glob("searched-search-*"))  # one node: the search folder goes


@pytest.mark.multiprocess
def test_a_failing_worker_is_one_line_and_the_session_is_as_it_was(session):
    adapters = set(session.adapters)
    failed = r"search in worker processes failed: worker-\d: --max-len 2 is shorter"
    with pytest.raises(FtpeError, match=failed) as error:
        session.finetune(TEMPLATE, ROWS, "broken", nproc=2, **{**SEARCH, "space": "max_len=2"})
    assert "\n" not in str(error.value)
    assert set(session.adapters) == adapters and session.loaded
