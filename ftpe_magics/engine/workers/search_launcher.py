"""``%%finetune --search N --nproc K``: the kernel's side of a search whose trials train K at a time.

The kernel checks and tokenises once, creates the Optuna study in a journal file under ``Ftpe.jobs_dir`` (the
first trial is the settings as given, as in the kernel), and starts K workers (:mod:`.search_worker`), each on
its own device, in its own process group (the stop button reaches the kernel only). It says each trial as it
ends, turns the stop button into the stop file (every running trial stops at its next step and keeps its
adapter, as in the kernel), and when the workers are done picks the best finished trial by validation accuracy
and reads its adapter back. Run the same cell with ``--nnodes M --node-rank R`` on machines that share
``Ftpe.jobs_dir`` and their workers join the same study; node 0's kernel waits for every trial and chooses.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..adapters.files import load_adapter
from ..errors import FtpeError
from ..finetune.options import LaunchOptions
from ..finetune.search import SearchOutcome, optuna_module, outcome, quiet_optuna
from ..finetune.space import search_space, starting_point
from ..finetune.train import TrainingJob
from ..model.loading import DTYPE_NAMES
from ..model.memory import free_accelerator_memory
from .jobs import ERRORS, JOB_FILE, STOP, write_job
from .launcher import check_method, earliest_error, end_group, start_process, watch
from .search_files import SEARCH_FILE, STUDY_NAME, TRIALS, journal_storage, search_folder

_POLL_SECONDS = 0.5
_JOIN_WAIT_SECONDS = 300  # how long a node other than 0 waits for node 0 to create the study


def _create_study(folder: Path, job: TrainingJob, trials: int, budget_minutes: float | None) -> None:
    """Node 0: a fresh folder, the study with the settings as given as its first trial, the search's facts."""
    for name in (TRIALS, ERRORS, STOP, SEARCH_FILE, "study.journal", "claim.lock"):
        path = folder / name
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    optuna = optuna_module()
    with quiet_optuna(optuna):
        study = optuna.create_study(study_name=STUDY_NAME, storage=journal_storage(folder), direction="maximize")
        study.enqueue_trial(starting_point(job.options, search_space(job.options)))
    deadline = time.time() + 60 * budget_minutes if budget_minutes else None
    (folder / SEARCH_FILE).write_text(json.dumps({"trials": trials, "deadline": deadline}))


def _wait_for_study(folder: Path) -> None:
    waited = time.monotonic()
    while not (folder / SEARCH_FILE).is_file():
        if time.monotonic() - waited > _JOIN_WAIT_SECONDS:
            raise FtpeError(f"No search from node 0 in {folder.name} after {_JOIN_WAIT_SECONDS} s: run the cell on "
                            "node 0 first, with the same Ftpe.jobs_dir on a shared filesystem.")
        time.sleep(_POLL_SECONDS)


def _rows(folder: Path) -> list[dict]:
    rows = [json.loads(path.read_text()) for path in (folder / TRIALS).glob("*/row.json")]
    return sorted(rows, key=lambda row: row["trial"])


def _worker_env(device: str, workers: int) -> dict[str, str]:
    """On a CPU the cores are split between the workers (threads that fight make every worker slower)."""
    if device.startswith("cuda"):
        return {}
    threads = max(1, (os.cpu_count() or 1) // workers)
    return {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def _say(row: dict, trials: int, log: Callable[[str], None]) -> None:
    score = f"validation accuracy {row['val_accuracy']:.3f}" if row["val_accuracy"] is not None else "no score"
    log(f"Search: trial {row['trial']} {row['state']} on worker {row['worker']} ({score}, {row['steps']} steps, "
        f"{row['seconds']:.0f} s); {trials} trial(s) in all.")


def _watch(processes: list, folder: Path, trials: int, log: Callable[[str], None]) -> list[dict]:
    """Say each trial as it ends, until every worker has exited; the rows of every trial."""
    said: set[int] = set()

    def finished() -> bool:
        for row in _rows(folder):
            if row["trial"] not in said:
                said.add(row["trial"])
                _say(row, trials, log)
        return all(process.poll() is not None for process in processes)

    watch(finished, folder, log, "Stopping every running trial at its next step (press stop again to end the "
                                 "workers at once)...")
    return _rows(folder)


def _chosen(rows: list[dict]) -> int | None:
    """The kernel's rule: the best finished trial by validation accuracy (the earlier on a tie); when none
    finished, the best stopped trial that kept an adapter."""
    for states in (("complete",), ("stopped", "stopped (budget)")):
        kept = [row for row in rows if row["state"] in states and row["kept"] and row["val_accuracy"] is not None]
        if kept:
            return max(kept, key=lambda row: (row["val_accuracy"], -row["trial"]))["trial"]
    return None


def _wait_for_other_nodes(folder: Path, log: Callable[[str], None]) -> None:
    """Node 0 of several: the choice waits until no trial of the study is running anywhere (stop: choose now)."""
    optuna = optuna_module()
    storage = journal_storage(folder)
    running = optuna.trial.TrialState.RUNNING
    try:
        with quiet_optuna(optuna):
            while any(t.state == running for t in optuna.load_study(study_name=STUDY_NAME, storage=storage).trials):
                time.sleep(_POLL_SECONDS * 4)
    except KeyboardInterrupt:
        log("Search: choosing among the trials finished so far; trials still running on other nodes are left out.")


def _read_back(folder: Path, job: TrainingJob, device: str, row: dict) -> Any:
    """The chosen trial's adapter from its folder, with its training history and where it was stopped."""
    trial_folder = folder / TRIALS / str(row["trial"])
    adapter = load_adapter(trial_folder / "adapter", job.name, device, "")
    adapter.history = json.loads((trial_folder / "history.json").read_text())
    adapter.interrupted_at = None if row["state"] == "complete" else row["steps"]
    return adapter


def _start_workers(folder: Path, launch: LaunchOptions, device: str, workers: int) -> list:
    env = _worker_env(device, workers)
    first = launch.node_rank * workers
    return [start_process([sys.executable, "-m", "ftpe_magics.engine.workers.search_worker", str(folder),
                           str(slot)], folder / f"worker-{slot}.log", device, env)
            for slot in range(first, first + workers)]


def search_in_workers(job: TrainingJob, launch: LaunchOptions, loaded: Any, jobs_dir: str, trials: int,
                      budget_minutes: float | None, eval_batch_size: int,
                      log: Callable[[str], None]) -> SearchOutcome:
    """Run ``trials`` trials of ``job`` in ``launch.nproc`` workers sharing one study; the best adapter, read back
    from its trial's folder, with every trial's row."""
    check_method(job.options)
    if job.options.cv > 1:
        raise FtpeError("--search with --cv trains its folds in the kernel; leave out --nproc, or --cv.")
    folder = search_folder(jobs_dir, job, trials)
    if launch.node_rank == 0:
        _create_study(folder, job, trials, budget_minutes)
        write_job(folder / JOB_FILE, job, {"location": loaded.location, "model_id": loaded.source.model_id,
                                           "dtype": DTYPE_NAMES[loaded.precision.training],
                                           "placement": loaded.placement.as_dict(), "device": loaded.device,
                                           "eval_batch_size": eval_batch_size})
    else:
        _wait_for_study(folder)
    free_accelerator_memory()
    processes = _start_workers(folder, launch, loaded.device, min(launch.nproc, trials))
    try:
        rows = _watch(processes, folder, trials, log)
    finally:
        for process in processes:
            end_group(process)
    error = earliest_error(folder, "worker-*.txt")
    if error is not None:
        raise FtpeError(f"The search in worker processes failed: {error[0]}: {error[1]} (logs in {folder.name}; "
                        "the session is as it was).")
    if launch.node_rank == 0 and launch.nnodes > 1:
        _wait_for_other_nodes(folder, log)
        rows = _rows(folder)
    chosen = _chosen(rows)
    best = None if chosen is None else _read_back(folder, job, loaded.device, rows[[r["trial"] for r in rows].index(
        chosen)])
    result = outcome(None if best is None else (chosen, best), rows, search_space(job.options))
    if launch.nnodes == 1:
        shutil.rmtree(folder, ignore_errors=True)
    return result
