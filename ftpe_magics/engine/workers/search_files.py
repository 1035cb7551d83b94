"""The folder a parallel search shares between the kernel and its workers (``Ftpe.jobs_dir``/NAME-search-DIGEST,
the same path on every node)::

    job.json          the checked, tokenised job and how the model was loaded (as for ``--nproc`` training)
    search.json       how many trials, the deadline (wall-clock seconds since the epoch), the seed
    study.journal     the Optuna study every worker shares (Optuna's JournalFileBackend: it locks each write)
    claim.lock        held while a worker counts the trials and asks for the next one
    stop              present = stop: each worker's running trial stops at its next step
    trials/N/         trial N's row.json and, when it ran to an end or was stopped, its adapter/
    errors/worker-S   the first line of worker S's error
    worker-S.log      worker S's output
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ..digests import digest
from ..evaluation.identity import data_fingerprint
from ..finetune.train import TrainingJob

SEARCH_FILE, STUDY_FILE, CLAIM_LOCK, TRIALS = "search.json", "study.journal", "claim.lock", "trials"
STUDY_NAME = "ftpe-search"


def search_folder(jobs_dir: str | Path, job: TrainingJob, trials: int) -> Path:
    """The same folder on every node for the same cell and data, so that nodes join one study."""
    key = digest({"name": job.name, "options": dataclasses.asdict(job.options), "template": job.template.template,
                  "train": data_fingerprint(job.train), "val": data_fingerprint(job.val), "trials": trials,
                  "kind": "search"})
    return Path(jobs_dir).expanduser().absolute() / f"{job.name}-search-{key[:12]}"


def journal_storage(folder: Path) -> Any:
    """Optuna's storage for the study in ``folder``: a journal file, which needs no server and which workers on
    several nodes share over a common filesystem."""
    import optuna

    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(folder / STUDY_FILE)))
