"""Training in torchrun workers against training in the kernel, and QLoRA against LoRA, on the default model.

What it measures (issue 14), in one run, interleaved so every configuration sees the same machine:
- LoRA in the kernel (the baseline), in 1 worker (``--nproc 1``: the cost of the launch, the model load and the
  job folder) and in 2 workers with gloo (DDP on this machine's two cores, one thread each);
- the same LoRA on the model loaded in 4 bits (QLoRA through bitsandbytes' CPU backend).
For each: wall seconds of the whole call, training seconds inside Trainer, real tokens per second of training
and of the whole call, and the launch overhead (wall minus training).

    python benchmarks/bench_workers.py [--examples 256] [--steps 32] [--rounds 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from common import report

from ftpe_magics import Session, TrainingObserver
from ftpe_magics.engine.data.examples import load_examples

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "sst2"
TEMPLATE = "Review: {text}\nSentiment: {label}"


class Tokens(TrainingObserver):
    def __init__(self) -> None:
        self.tokens = 0

    def step(self, step: int, tokens: int) -> None:
        self.tokens = tokens


def rows(count: int) -> list[dict]:
    data = load_examples(str(DATA / "train.tsv"), label_names="0=negative,1=positive")
    return [{"text": row["text"], "label": label} for row, label in zip(data.rows[:count], data.labels[:count],
                                                                          strict=True)]


def one_run(session: Session, train: list[dict], steps: int, nproc: int | None) -> dict:
    counter = Tokens()
    started = time.perf_counter()
    adapter = session.finetune(TEMPLATE, train, "bench", max_steps=steps, batch_size=8, max_len=128, seed=0,
                               nproc=nproc, observers=[counter])
    wall = time.perf_counter() - started
    return {"wall_s": wall, "train_s": adapter.train_seconds, "tokens": counter.tokens}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=256)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    train = rows(args.examples)
    full, four_bit = Session(log=lambda m: None), Session(log=lambda m: None)
    for session in (full, four_bit):
        session.config.store, session.config.jobs_dir = "", tempfile.mkdtemp(prefix="ftpe-bench-jobs-")
    full.load()
    four_bit.load(quantize="4bit")
    configurations = {"LoRA in the kernel (baseline)": (full, None), "LoRA, --nproc 1": (full, 1),
                      "LoRA, --nproc 2 (gloo)": (full, 2), "QLoRA 4-bit in the kernel": (four_bit, None)}
    runs: dict[str, list[dict]] = {name: [] for name in configurations}
    for _ in range(args.rounds):
        for name, (session, nproc) in configurations.items():
            runs[name].append(one_run(session, train, args.steps, nproc))
    table = []
    baseline = None
    for name, results in runs.items():
        wall = statistics.median(r["wall_s"] for r in results)
        train_s = statistics.median(r["train_s"] for r in results)
        tokens = results[0]["tokens"]
        baseline = baseline or tokens / train_s
        table.append({"configuration": name, "wall_s": wall, "train_s": train_s, "launch_overhead_s": wall - train_s,
                      "tokens": tokens, "train_tokens_per_s": tokens / train_s, "wall_tokens_per_s": tokens / wall,
                      "train_speed_vs_baseline": tokens / train_s / baseline})
    report("workers", table, {"examples": args.examples, "steps": args.steps, "rounds": args.rounds,
                              "batch_size": 8, "max_len": 128})


if __name__ == "__main__":
    main()
