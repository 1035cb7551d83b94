"""The job folder a kernel hands to its ``torchrun`` workers, and what the workers hand back through it.

One folder per run (``Ftpe.jobs_dir``/NAME-DIGEST, the same path on every node)::

    node-R/job.json      this node's job: the checked, tokenised examples, the template, the options, where
                         the model's safetensors folder is and how it was loaded (written by node R's kernel)
    node-R/launcher.log  torchrun's and the workers' output on node R
    progress.jsonl       rank 0's training events, one JSON object per line (the live view reads them)
    stop                 present = stop: every rank checks it at each step and they agree on the step
    errors/rank-N.txt    the first line of rank N's error
    checkpoint/          the best adapter so far (rank 0, at each improving validation)
    adapter/             the final adapter (rank 0)

Everything is JSON or safetensors: a worker never unpickles what a kernel wrote.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from ..data.examples import Examples
from ..evaluation.identity import data_fingerprint, digest
from ..finetune.options import FinetuneOptions, LaunchOptions
from ..finetune.train import TrainingJob
from ..prompting.templates import ExampleTemplate

JOB_FILE, PROGRESS, STOP, ERRORS, CHECKPOINT, ADAPTER, LOG = ("job.json", "progress.jsonl", "stop", "errors",
                                                              "checkpoint", "adapter", "launcher.log")


def job_folder(jobs_dir: str | Path, job: TrainingJob, launch: LaunchOptions) -> Path:
    """The same folder on every node for the same cell and data, so that every node finds rank 0's adapter."""
    key = digest({"name": job.name, "options": dataclasses.asdict(job.options), "template": job.template.template,
                  "train": data_fingerprint(job.train), "val": data_fingerprint(job.val), "nnodes": launch.nnodes,
                  "nproc": launch.nproc, "strategy": launch.strategy})
    return Path(jobs_dir).expanduser().absolute() / f"{job.name}-{key[:12]}"


def node_folder(folder: Path, node_rank: int) -> Path:
    return folder / f"node-{node_rank}"


def _examples(data: Examples | None) -> dict | None:
    if data is None:
        return None
    return {"rows": data.rows, "input_col": data.input_col, "label_col": data.label_col, "labels": data.labels,
            "label_set": data.label_set}


def _read_examples(data: dict | None) -> Examples | None:
    return None if data is None else Examples(**data)


def write_job(path: Path, job: TrainingJob, model: dict[str, Any]) -> None:
    """``model``: the safetensors folder, the model's id, dtype, placement, device kind and scoring batch size."""
    payload = {"name": job.name, "template": job.template.template, "instructions": job.template.instructions,
               "options": dataclasses.asdict(job.options), "chat": job.chat, "strategy": job.strategy,
               "train": _examples(job.train), "val": _examples(job.val), "train_features": job.train_features,
               "val_features": job.val_features, "model": model}
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_suffix(".tmp")
    staging.write_text(json.dumps(payload))
    staging.replace(path)


def read_job(path: Path) -> tuple[TrainingJob, dict[str, Any]]:
    payload = json.loads(path.read_text())
    job = TrainingJob(payload["name"], ExampleTemplate(payload["template"], payload["instructions"]),
                      _read_examples(payload["train"]), _read_examples(payload["val"]),
                      FinetuneOptions(**payload["options"]), payload["chat"], payload["train_features"],
                      payload["val_features"], payload["strategy"])
    return job, payload["model"]
