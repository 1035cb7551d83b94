"""One ``torchrun`` worker: ``python -m ftpe_magics.engine.workers.worker JOB_FOLDER NODE_FOLDER``.

It runs the engine's own training (:func:`.train.train_adapter`), with no notebook in the process: it
joins the process group, loads the base model from the safetensors folder the kernel named (placed as the
kernel's was), trains the job the kernel tokenised, and on rank 0 reports progress and writes the adapter.
A failure is written as one line to ``errors/rank-N.txt`` before the worker exits non-zero (torchrun then
ends the other ranks).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ..errors import FtpeError
from ..finetune.train import train_adapter
from ..model.loading import ModelSource, load_pretrained, resolve_dtype
from ..model.placement import Placement
from .jobs import ADAPTER, CHECKPOINT, ERRORS, JOB_FILE, PROGRESS, STOP, read_job
from .progress import ProgressWriter

_FAIL_AT_STEP = "FTPE_TEST_FAIL_RANK"  # tests: "RANK:STEP" makes that rank raise at that step (a crash mid-run)


def _join_group(device_kind: str) -> str:
    """Join the process group torchrun describes in the environment; the device this rank trains on."""
    if device_kind.startswith("cuda"):
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local_rank)
        torch.distributed.init_process_group("nccl")
        return f"cuda:{local_rank}"
    torch.distributed.init_process_group("gloo")
    return "cpu"


def _planted_failure() -> Callable[[], bool] | None:
    """For the failure tests only: raise in one rank at one step, as a bug in a worker would."""
    spec = os.environ.get(_FAIL_AT_STEP)
    if not spec:
        return None
    rank, step = (int(part) for part in spec.split(":"))
    calls = iter(range(1, 1 << 30))
    if torch.distributed.get_rank() != rank:
        return None

    def check() -> bool:
        if next(calls) >= step:
            raise RuntimeError(f"planted failure in rank {rank} at step {step}")
        return False

    return check


def run(folder: Path, node: Path) -> None:
    job, spec = read_job(node / JOB_FILE)
    device = _join_group(spec["device"])
    rank = torch.distributed.get_rank()
    source = ModelSource("folder", spec["location"], spec["model_id"])
    model, tokenizer = load_pretrained(spec["location"], source, device, resolve_dtype(spec["dtype"], device),
                                       placement=Placement(**spec["placement"]))
    observers = [ProgressWriter(folder / PROGRESS, folder / CHECKPOINT, folder / ADAPTER)] if rank == 0 else []
    stop_file, planted = folder / STOP, _planted_failure()

    def stop_requested() -> bool:
        return (planted() if planted else False) or stop_file.exists()

    train_adapter(model, tokenizer, spec["location"], device, job, observers, spec["eval_batch_size"],
                  stop_requested=stop_requested)
    torch.distributed.barrier()  # no rank leaves before rank 0 has written the adapter


def _say_error(folder: Path, error: BaseException) -> None:
    rank = os.environ.get("RANK", "0")
    text = str(error) if isinstance(error, FtpeError) else f"{type(error).__name__}: {str(error).strip()}"
    line = (text.strip().splitlines() or [type(error).__name__])[0][:300]
    errors = folder / ERRORS
    errors.mkdir(parents=True, exist_ok=True)
    (errors / f"rank-{rank}.txt").write_text(f"{time.time()}\n{line}\n")


def main(argv: list[str] | None = None) -> int:
    folder, node = (Path(arg) for arg in (argv if argv is not None else sys.argv[1:]))
    try:
        run(folder, node)
    except BaseException as error:  # noqa: BLE001 - any failure: one line for the kernel, then a non-zero exit
        _say_error(folder, error)
        raise
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
