"""One worker of a parallel search: ``python -m ftpe_magics.engine.workers.search_worker SEARCH_FOLDER SLOT``.

Trials of one search are independent runs, so a parallel search needs no process group: each worker owns one
device, loads the base model once, and takes trials from the study they all share (Optuna's journal file in the
search folder, which Optuna locks for every write, so workers on several nodes of a shared filesystem join it as
well). A trial is claimed under a file lock, so the workers together never start more than the trials asked for.
Each trial trains with the kernel's own rules (:func:`..finetune.search.one_trial`: the median pruner over every
worker's reports, the budget, the stop file) and leaves its row and, when it ran to an end, its adapter in
``trials/N/``; the kernel picks the best from those. A failure is one line in ``errors/`` and a non-zero exit.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..adapters.files import save_adapter
from ..errors import FtpeError
from ..finetune.search import one_trial, optuna_module, quiet_optuna, samplers
from ..finetune.space import search_space
from ..finetune.train import prepare, train_adapter
from ..model.loading import ModelSource, load_pretrained, resolve_dtype
from ..model.placement import Placement
from .jobs import ERRORS, JOB_FILE, STOP, read_job
from .search_files import CLAIM_LOCK, SEARCH_FILE, STUDY_NAME, TRIALS, journal_storage


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def claim_trial(study: Any, folder: Path, trials: int) -> Any | None:
    """The next trial of the study, or None once ``trials`` are running or done (or a stop was asked): counted
    and asked under one lock, so two workers never both take the last one."""
    with _locked(folder / CLAIM_LOCK):
        if (folder / STOP).exists() or len(study.get_trials(deepcopy=False)) >= trials:
            return None
        return study.ask()


def _device(kind: str, slot: int) -> str:
    """This worker's device: GPU ``slot`` of the visible ones on a GPU machine, else the CPU."""
    if not kind.startswith("cuda"):
        return "cpu"
    import torch

    index = slot % max(1, torch.cuda.device_count())
    torch.cuda.set_device(index)
    return f"cuda:{index}"


def _keep(folder: Path, number: int, row: dict, adapter: Any) -> None:
    """The trial's adapter (when it has one) before its row: a row the kernel reads always has its adapter."""
    trial_folder = folder / TRIALS / str(number)
    trial_folder.mkdir(parents=True, exist_ok=True)
    if adapter is not None:
        save_adapter(adapter, trial_folder / "adapter")
        (trial_folder / "history.json").write_text(json.dumps(list(adapter.history), default=float))
    row = {**row, "kept": adapter is not None}
    staging = trial_folder / "row.tmp"
    staging.write_text(json.dumps(row, default=float))
    staging.replace(trial_folder / "row.json")


def run(folder: Path, slot: int) -> None:
    job, spec = read_job(folder / JOB_FILE)
    settings = json.loads((folder / SEARCH_FILE).read_text())
    device = _device(spec["device"], slot)
    source = ModelSource("folder", spec["location"], spec["model_id"])
    model, tokenizer = load_pretrained(spec["location"], source, device, resolve_dtype(spec["dtype"], device),
                                       placement=Placement(**spec["placement"]))
    optuna, stop_file = optuna_module(), folder / STOP
    deadline = (time.monotonic() + settings["deadline"] - time.time()) if settings["deadline"] else None
    space = search_space(job.options)

    def train_trial(options: Any, watchers: list) -> Any:
        trial_job = prepare(tokenizer, job.name, job.template, job.train, job.val, options)
        return train_adapter(model, tokenizer, spec["location"], device, trial_job, watchers,
                             spec["eval_batch_size"], stop_requested=stop_file.exists)

    with quiet_optuna(optuna):
        sampler, pruner = samplers(optuna, settings["trials"], job.options.seed + slot)
        study = optuna.load_study(study_name=STUDY_NAME, storage=journal_storage(folder), sampler=sampler,
                                  pruner=pruner)
        while (trial := claim_trial(study, folder, settings["trials"])) is not None:
            params = {dimension.name: dimension.suggest(trial) for dimension in space}
            adapter, row, ended = one_trial(optuna, study, trial, train_trial, job.options, params, deadline,
                                            trial.number)
            _keep(folder, trial.number, {**row, "worker": slot}, adapter)
            if ended:  # the stop file or the budget: every worker sees the same and ends after its trial
                break


def _say_error(folder: Path, slot: int, error: BaseException) -> None:
    text = str(error) if isinstance(error, FtpeError) else f"{type(error).__name__}: {str(error).strip()}"
    line = (text.strip().splitlines() or [type(error).__name__])[0][:300]
    (folder / ERRORS).mkdir(parents=True, exist_ok=True)
    (folder / ERRORS / f"worker-{slot}.txt").write_text(f"{time.time()}\n{line}\n")


def main(argv: list[str] | None = None) -> int:
    folder, slot = (argv if argv is not None else sys.argv[1:])[:2]
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        run(Path(folder), int(slot))
    except BaseException as error:  # noqa: BLE001 - any failure: one line for the kernel, then a non-zero exit
        _say_error(Path(folder), int(slot), error)
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
