"""``%%finetune --nproc N``: the kernel's side of training in ``torchrun`` worker processes.

Why a launcher and not ``accelerate.notebook_launcher``: that forks the kernel, which CUDA forbids once the
kernel holds a model on a GPU, and it refuses after any earlier ``Trainer`` in the kernel. Here the kernel
writes a job folder (:mod:`.jobs`), starts ``torchrun`` as a child in its own process group (so the kernel's
stop button reaches the kernel only), replays rank 0's progress to its observers, asks every rank to stop
through a file, and on success reads the adapter back; whatever happens, no process of the group outlives
the call.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..adapters.files import load_adapter
from ..adapters.registry import Adapter
from ..errors import FtpeError
from ..finetune.distributed import LOCAL_ADDRESS
from ..finetune.methods import COPY_METHODS, is_classifier
from ..finetune.observers import Observers, TrainingHistory, TrainingObserver
from ..finetune.options import FinetuneOptions, LaunchOptions
from ..finetune.train import TrainingJob
from ..model.loading import DTYPE_NAMES, display_path
from ..model.memory import free_accelerator_memory
from .jobs import ADAPTER, CHECKPOINT, ERRORS, JOB_FILE, LOG, PROGRESS, STOP, job_folder, node_folder, write_job
from .progress import ProgressReader

_POLL_SECONDS = 0.2


def check_method(options: FinetuneOptions) -> None:
    if is_classifier(options):
        raise FtpeError(f"--method {options.method} trains a classification head in seconds in the kernel; --nproc "
                        "is for lora, ia3, prompt-tuning, full and unfreeze.")


def check_launch(job: TrainingJob, launch: LaunchOptions, device: str, quantized: bool) -> None:
    """What would fail in every worker, said once in the kernel before anything starts."""
    options = job.options
    check_method(options)
    if launch.nnodes > 1 and (not launch.master_addr or not launch.master_port):
        raise FtpeError("--nnodes > 1 needs --master-addr HOST --master-port PORT (node 0's address, the same on "
                        "every node).")
    if options.batch_size % launch.world_size:
        raise FtpeError(f"--batch-size {options.batch_size} does not split over {launch.world_size} processes: use a "
                        f"multiple of {launch.world_size} (it is the global batch, the same whatever --nproc).")
    if launch.strategy == "fsdp" and not device.startswith("cuda"):
        raise FtpeError("--strategy fsdp shards a model over GPUs; on CPU use --strategy ddp.")
    if launch.strategy == "fsdp" and (options.method not in COPY_METHODS or quantized):
        raise FtpeError("--strategy fsdp shards a full fine-tune (--method full or unfreeze, unquantised); an "
                        "adapter is small enough for --strategy ddp.")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOCAL_ADDRESS, 0))
        return probe.getsockname()[1]


def launch_command(launch: LaunchOptions, folder: Path, node: Path) -> list[str]:
    """torchrun, from this Python, with no restarts: a failed rank fails the run."""
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={launch.nproc}",
            f"--nnodes={launch.nnodes}", f"--node-rank={launch.node_rank}",
            f"--master-addr={launch.master_addr or LOCAL_ADDRESS}",
            f"--master-port={launch.master_port or _free_port()}",
            "--max-restarts=0", "-m", "ftpe_magics.engine.workers.worker", str(folder), str(node)]


def start_process(command: list[str], log_path: Path, device: str,
                  extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    """``command`` in its own process group, importing this copy of the package, its output in ``log_path``."""
    env = {**os.environ, **(extra_env or {})}
    package_root = str(Path(__file__).resolve().parents[3])  # the workers import this very copy of the package
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    if not device.startswith("cuda"):
        env["CUDA_VISIBLE_DEVICES"] = ""  # a CPU run stays on the CPU, as the session does
    with open(log_path, "ab") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)  # its own process group: ours to end, deaf to our SIGINT


def end_group(process: subprocess.Popen, grace: float = 5.0) -> None:
    """End the launcher and every worker it started (they share its process group)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
        if sig == signal.SIGTERM:
            try:  # the launcher is gone; a worker it could not end must not linger
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            break


def earliest_error(folder: Path, pattern: str) -> tuple[str, str] | None:
    """The worker and first line of the earliest error file in ``folder/errors`` (the first real failure; the
    others are often its echo), or None."""
    reports = []
    for path in (folder / ERRORS).glob(pattern):
        stamp, _, line = path.read_text().partition("\n")
        reports.append((float(stamp or 0), path.stem, line.strip()))
    return min(reports)[1:] if reports else None


def first_error(folder: Path, node: Path, code: int) -> str:
    """The first real error of the failing rank (the earliest error file), else the log's last error line."""
    earliest = earliest_error(folder, "rank-*.txt")
    if earliest:
        rank, line = earliest
        return f"{rank.replace('-', ' ')}: {line}"
    log = (node / LOG).read_text(errors="replace").splitlines() if (node / LOG).is_file() else []
    lines = [line.strip() for line in log if "Error" in line and "torch.distributed.elastic" not in line]
    return lines[-1][:300] if lines else f"the workers exited with code {code}"


def _shown(path: Path) -> str:
    """A path for a notebook's output: relative to the working folder when under it (no machine path saved)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return display_path(path)


def watch(finished: Callable[[], bool], folder: Path, log: Callable[[str], None], stopping: str) -> bool:
    """Ask ``finished`` until it says the workers are done; the stop button writes the stop file every worker
    checks at each step (saying ``stopping``), a second press ends the workers. Returns whether a stop was asked."""
    asked = False
    while True:
        try:
            if finished():
                return asked
            time.sleep(_POLL_SECONDS)
        except KeyboardInterrupt:
            if asked:
                raise FtpeError("Stopped twice: the workers were ended and no adapter was kept; the session is as "
                                "it was.") from None
            (folder / STOP).touch()
            asked = True
            log(stopping)


def _watch(process: subprocess.Popen, reader: Any, folder: Path, log: Callable[[str], None]) -> bool:
    """Replay progress until the launcher exits."""
    def finished() -> bool:
        reader.poll()
        if process.poll() is None:
            return False
        reader.poll()
        return True

    return watch(finished, folder, log, "Stopping every rank at the next step (press stop again to end the workers "
                                        "at once)...")


def _prepare_folder(folder: Path, node: Path, launch: LaunchOptions) -> None:
    if launch.node_rank == 0:  # node 0 owns the shared files of a run; an earlier run of the same cell goes
        for name in (PROGRESS, STOP, ERRORS, CHECKPOINT, ADAPTER):
            path = folder / name
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    shutil.rmtree(node, ignore_errors=True)
    node.mkdir(parents=True)


def train_in_workers(job: TrainingJob, launch: LaunchOptions, loaded: Any, jobs_dir: str,
                     observers: list[TrainingObserver], eval_batch_size: int,
                     log: Callable[[str], None]) -> Adapter:
    """Train ``job`` in ``launch.nproc`` workers on the model ``loaded`` (a :class:`LoadedModel`) and return the
    adapter, read back from rank 0's folder; the kernel's model is not touched."""
    check_launch(job, launch, loaded.device, bool(loaded.placement.quantize))
    job.strategy = launch.strategy
    folder = job_folder(jobs_dir, job, launch)
    node = node_folder(folder, launch.node_rank)
    _prepare_folder(folder, node, launch)
    write_job(node / JOB_FILE, job, {"location": loaded.location, "model_id": loaded.source.model_id,
                                     "dtype": DTYPE_NAMES[loaded.precision.training],  # what training runs in
                                     "placement": loaded.placement.as_dict(), "device": loaded.device,
                                     "eval_batch_size": eval_batch_size})
    free_accelerator_memory()  # the cached blocks of the kernel's allocator go back before the workers start
    history = TrainingHistory()
    observer = Observers([history, *observers])
    checkpoint = lambda: load_adapter(folder / CHECKPOINT, job.name, loaded.device, "")  # noqa: E731
    reader = ProgressReader(folder / PROGRESS, observer, checkpoint)
    process = start_process(launch_command(launch, folder, node), node / LOG, loaded.device)
    try:
        _watch(process, reader, folder, log)
    finally:
        end_group(process)
    if process.returncode != 0 or reader.ended is None:
        raise FtpeError(f"Training in {launch.world_size} worker processes failed: "
                        f"{first_error(folder, node, process.returncode)} (logs in {_shown(node)}; the "
                        "session is as it was).")
    adapter = load_adapter(folder / ADAPTER, job.name, loaded.device, "")
    adapter.history, adapter.interrupted_at = list(history.records), reader.ended["interrupted_at"]
    adapter.train_seconds = reader.ended["train_seconds"]
    observer.end(adapter)
    if launch.nnodes == 1:
        shutil.rmtree(folder, ignore_errors=True)
    return adapter
