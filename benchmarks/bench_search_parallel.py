"""A fine-tune search in the kernel against the same search with its trials in 2 worker processes (issue 26, item 8).

Default model, SST-2 train; ``--search 4`` LoRA trials over the learning rate, judged on a 25% validation split,
the kernel's search (the baseline: one trial at a time, both cores) and ``--nproc 2`` (two trials at a time, one
core each), interleaved round by round in one run. Reported: wall seconds of the whole call, the chosen trial's
validation accuracy, the trials' total training seconds, and the speed-up. On 2 cores the two ways have the same
compute; the parallel search pays two model loads and wins only what one trial cannot use of both cores.

    python benchmarks/bench_search_parallel.py [--examples 128] [--steps 8] [--trials 4] [--rounds 1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from common import report

from ftpe_magics import Session
from ftpe_magics.engine.data.examples import load_examples

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "sst2"
TEMPLATE = "Review: {text}\nSentiment: {label}"


def one_search(session: Session, train: list[dict], args: argparse.Namespace, nproc: int | None) -> dict:
    started = time.perf_counter()
    adapter = session.finetune(TEMPLATE, train, "searched", search=args.trials, nproc=nproc, max_steps=args.steps,
                               batch_size=8, max_len=128, val_split=0.25, seed=0, space="lr=1e-4:1e-2")
    wall = time.perf_counter() - started
    rows = adapter.search_log
    return {"wall_s": wall, "best_val_accuracy": adapter.best_metric,
            "trial_seconds": sum(row["seconds"] for row in rows),
            "states": ",".join(row["state"] for row in sorted(rows, key=lambda row: row["trial"]))}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    data = load_examples(str(DATA / "train.tsv"), label_names="0=negative,1=positive").head(args.examples)
    train = [{"text": row["text"], "label": label} for row, label in zip(data.rows, data.labels, strict=True)]
    session = Session(log=lambda message: None)
    session.config.store, session.config.jobs_dir = "", tempfile.mkdtemp(prefix="ftpe-bench-jobs-")
    session.load()
    ways = {"--search in the kernel (baseline)": None, "--search --nproc 2": 2}
    runs: dict[str, list[dict]] = {name: [] for name in ways}
    for _ in range(args.rounds):
        for name, nproc in ways.items():
            runs[name].append(one_search(session, train, args, nproc))
    baseline = statistics.median(run["wall_s"] for run in runs["--search in the kernel (baseline)"])
    table = []
    for name, results in runs.items():
        wall = statistics.median(run["wall_s"] for run in results)
        table.append({"way": name, "wall_s": wall, "speedup_vs_kernel": baseline / wall,
                      "trial_seconds_sum": statistics.median(run["trial_seconds"] for run in results),
                      "best_val_accuracy": results[-1]["best_val_accuracy"], "states": results[-1]["states"]})
    report("search_parallel", table, {"examples": args.examples, "steps": args.steps, "trials": args.trials,
                                      "rounds": args.rounds, "batch_size": 8, "max_len": 128})


if __name__ == "__main__":
    main()
