"""Beyond one device, on this CPU: training in torchrun workers (gloo), one device pinned in the kernel, device maps,
and merged export. The worker tests start real process groups (about 10-15 s each)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

from ftpe_magics import FtpeError, Session, TrainingObserver, get_session
from ftpe_magics.engine.finetune.train import one_device
from ftpe_magics.engine.model.placement import Placement, parse_max_memory

TEMPLATE = "Review: {text}\nSentiment: {label}"
ROWS = ([{"text": f"the movie was great {i}", "label": "positive"} for i in range(16)]
        + [{"text": f"a terrible film , boring {i}", "label": "negative"} for i in range(16)])
VAL = ROWS[::4]
TRAINING = {"max_steps": 8, "batch_size": 8, "lr": 1e-2, "eval_steps": 4, "seed": 0}


@pytest.fixture
def session(tiny_model_dir, tmp_path) -> Session:
    session = Session(log=lambda message: None)
    session.config.cache_dir, session.config.jobs_dir = str(tmp_path / "cache"), str(tmp_path / "jobs")
    return session.load(str(tiny_model_dir))


def _logits(model, session: Session) -> torch.Tensor:
    inputs = session.tokenizer(["Review: a great film\nSentiment:"], return_tensors="pt")
    with torch.no_grad():
        return model(**inputs).logits


def _our_processes(folder: Path) -> list[int]:
    """Processes whose command line names the job folder: the launcher and its workers."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if str(folder) in (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


@pytest.mark.multiprocess
def test_two_workers_train_like_one_process(session):
    base_before = _logits(session.base_model, session)
    alone = session.finetune(TEMPLATE, ROWS, "alone", eval=VAL, **TRAINING)
    workers = session.finetune(TEMPLATE, ROWS, "workers", eval=VAL, nproc=2, **TRAINING)
    assert workers.steps == alone.steps == 8 and workers.interrupted_at is None
    # the same global batch and seed: the validation losses follow the single-process run closely
    alone_evals = [r["eval_loss"] for r in alone.history if "eval_loss" in r]
    worker_evals = [r["eval_loss"] for r in workers.history if "eval_loss" in r]
    assert len(worker_evals) == len(alone_evals) == 2
    for mine, theirs in zip(worker_evals, alone_evals, strict=True):
        assert abs(mine - theirs) / theirs < 0.15
    assert alone_evals[-1] < alone_evals[0] and worker_evals[-1] < worker_evals[0]  # both learned
    assert [r["step"] for r in workers.history if "loss" in r] == list(range(1, 9))  # the live view saw every step
    assert torch.equal(_logits(session.base_model, session), base_before)  # the kernel's base was not touched
    with session.using("workers"):
        trained = _logits(session.model, session)
    assert not torch.allclose(trained, base_before)  # the adapter came back and is used
    assert not list(Path(session.config.jobs_dir).glob("*")), "a finished single-node job leaves no folder"


@pytest.mark.multiprocess
def test_failing_rank_is_one_line_and_leaves_nothing(session, monkeypatch):
    session.finetune(TEMPLATE, ROWS, "kept", max_steps=2, batch_size=8)
    monkeypatch.setenv("FTPE_TEST_FAIL_RANK", "1:3")
    with pytest.raises(FtpeError) as failure:
        session.finetune(TEMPLATE, ROWS, "broken", nproc=2, max_steps=20, batch_size=8)
    message = str(failure.value)
    assert "rank 1: RuntimeError: planted failure in rank 1 at step 3" in message and "\n" not in message
    assert "session is as it was" in message
    assert list(session.adapters) == ["kept"]
    jobs = list(Path(session.config.jobs_dir).glob("*"))
    assert len(jobs) == 1 and (jobs[0] / "node-0" / "launcher.log").is_file()  # kept for reading
    assert _our_processes(jobs[0]) == []


class _PressStop(TrainingObserver):
    """The stop button, pressed while step ``at`` is shown."""

    def __init__(self, at: int) -> None:
        self.at, self.pressed = at, False

    def step(self, step: int, tokens: int) -> None:
        if step >= self.at and not self.pressed:
            self.pressed = True
            raise KeyboardInterrupt


@pytest.mark.multiprocess
def test_stop_ends_every_rank_at_the_same_step(session):
    stop = _PressStop(at=3)
    adapter = session.finetune(TEMPLATE, ROWS, "stopped", nproc=2, max_steps=400, batch_size=8, observers=[stop])
    assert stop.pressed
    # ranks that disagreed on the step would hang in the next all-reduce or fail the launch: both stopped here
    assert adapter.interrupted_at is not None and 3 <= adapter.interrupted_at < 400
    assert adapter.steps == adapter.interrupted_at
    assert "stopped" in session.adapters


def test_the_kernel_trains_on_one_device_whatever_it_sees(tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    args._n_gpu = 4  # what transformers counts on a machine with four GPUs
    model = torch.nn.Linear(2, 2)
    assert isinstance(Trainer(model=model, args=args)._wrap_model(model), torch.nn.DataParallel)
    pinned = one_device(args)
    assert pinned.n_gpu == 1
    assert Trainer(model=model, args=pinned)._wrap_model(model) is model


def test_status_says_which_devices(session):
    status = session.status()
    assert status["devices visible"].startswith("cpu only") and status["placement"] == "whole model on one device"


def test_device_map_loads_and_scores_the_same(session, tiny_model_dir):
    whole = _logits(session.base_model, session)
    mapped = Session(log=lambda message: None).load(str(tiny_model_dir), device_map="auto",
                                                   max_memory="cpu=4GiB")
    assert mapped.device == "cpu" and mapped.loaded_model.placement.device_map == "auto"
    assert torch.allclose(_logits(mapped.base_model, mapped), whole, atol=1e-5)
    assert mapped.prompt("Review: great", max_new_tokens=3).outputs[0] == session.prompt(
        "Review: great", max_new_tokens=3).outputs[0]
    assert parse_max_memory("0=20GiB, 1=20GiB,cpu=64GiB") == {0: "20GiB", 1: "20GiB", "cpu": "64GiB"}
    with pytest.raises(FtpeError, match="add --device-map auto"):
        Placement(max_memory="0=1GiB")


@pytest.mark.parametrize("method", ["lora", "ia3", "full"])
def test_merged_export_loads_with_the_same_logits(session, tmp_path, method):
    session.finetune(TEMPLATE, ROWS, method, method=method, max_steps=3, lr=1e-2, batch_size=8)
    base_before = _logits(session.base_model, session)
    folder = session.export(method, str(tmp_path / "export"))
    with session.using(method):
        expected = _logits(session.model, session)
    standalone = AutoModelForCausalLM.from_pretrained(folder)  # no peft, no ftpe_magics needed
    assert (_logits(standalone, session) - expected).abs().max() < 1e-4
    assert not torch.allclose(expected, base_before)  # the adapter matters, so the test can fail
    assert torch.equal(_logits(session.base_model, session), base_before)  # merged into a copy only
    assert (Path(folder) / "model.safetensors").is_file() and (Path(folder) / "tokenizer.json").is_file()
    session.export(method, folder)  # an earlier export of ours is replaced, never anything else


def test_prompt_tuning_cannot_be_merged(session, tmp_path):
    session.finetune(TEMPLATE, ROWS, "soft", method="prompt-tuning", max_steps=1, batch_size=8)
    with pytest.raises(FtpeError, match="soft prompt"):
        session.export("soft", str(tmp_path / "x"))
    assert not (tmp_path / "x").exists()


@pytest.mark.multiprocess
def test_magics_train_in_a_worker_and_export(shell, capsys, tmp_path, monkeypatch):
    from ftpe_magics import magics
    from ftpe_magics.display.training_view import TrainingView

    views = []

    class KeptView(TrainingView):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            views.append(self)

    monkeypatch.setattr(magics, "TrainingView", KeptView)
    shell.user_ns["rows"] = ROWS
    shell.run_line_magic("config", f"Ftpe.jobs_dir = {str(tmp_path / 'jobs')!r}")
    capsys.readouterr()
    shell.run_cell_magic("finetune", "--train rows --name w --nproc 1 --max-steps 4 --batch-size 8 --val-split 0.25",
                         TEMPLATE)
    out = capsys.readouterr().out
    assert "Adapter 'w' (lora, 4 steps" in out, out
    # the live view was fed from the worker's progress file: every step's loss and the validations
    assert [r["step"] for r in views[0].records if "loss" in r] == [1, 2, 3, 4]
    assert any("eval_accuracy" in r for r in views[0].records) and views[0].current_step == 4
    shell.run_line_magic("ftpe", f"export w {tmp_path / 'merged'} --merged")
    assert "Exported 'w' merged into the base" in capsys.readouterr().out
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    assert not hasattr(merged, "peft_config")  # a plain model: the adapter is merged into its weights
    assert merged.num_parameters() == get_session().base_model.num_parameters()
    shell.run_line_magic("ftpe", "status")
    assert "devices visible" in capsys.readouterr().out


NODE_ONE = """
import json, sys
from ftpe_magics import Session
model, jobs, port, rows = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
session = Session(log=lambda message: None)
session.config.store, session.config.jobs_dir = "", jobs
session.load(model)
adapter = session.finetune("Review: {text}\\nSentiment: {label}", rows, "two-nodes", nproc=1, nnodes=2, node_rank=1,
                           master_addr="127.0.0.1", master_port=port, max_steps=4, batch_size=8, lr=1e-2, seed=0)
print(json.dumps({"steps": adapter.steps, "state": {k: v.sum().item() for k, v in adapter.state.items()}}))
"""


@pytest.mark.multiprocess
def test_two_nodes_share_one_adapter(session, tiny_model_dir):
    """Two 'machines' on this one: the same cell run by two kernels with --nnodes 2, one rank each. Both kernels get
    the adapter rank 0 wrote to the shared job folder."""
    import json
    import socket
    import subprocess
    import sys

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    other = subprocess.Popen([sys.executable, "-c", NODE_ONE, str(tiny_model_dir), session.config.jobs_dir, str(port),
                              json.dumps(ROWS)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        mine = session.finetune(TEMPLATE, ROWS, "two-nodes", nproc=1, nnodes=2, node_rank=0, master_addr="127.0.0.1",
                                master_port=port, max_steps=4, batch_size=8, lr=1e-2, seed=0)
        out, err = other.communicate(timeout=120)
    finally:
        other.kill()
    assert other.returncode == 0, err[-2000:]
    theirs = json.loads(out.strip().splitlines()[-1])
    assert mine.steps == theirs["steps"] == 4
    assert {k: v.sum().item() for k, v in mine.state.items()} == theirs["state"]  # the very same weights
