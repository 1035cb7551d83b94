"""What validation costs a search: ``%%finetune --method lora --search 2 --max-steps 10`` on 2,000 SST-2 training
examples (the default 20% validation split: 400 reviews), with the default model.

Reported per dtype plan (``fp32``, and ``auto``, which on a CPU with native bf16 trains on a bf16 copy): the
wall time of the whole search (both trials and the chosen adapter), the training seconds, the validations
(and the examples each scored) and the chosen trial. Before issue 26 the same command took about 14 minutes on
this 2-core machine: 400 examples scored every 2 steps, each time twice (the Trainer's loss pass and the
accuracy pass).

    python benchmarks/bench_validation.py [--dtypes fp32,auto]
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

from common import report

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "sst2"


def rows(count: int) -> list[dict]:
    lines = (DATA / "train.tsv").read_text().splitlines()[1:]
    chosen = sorted(random.Random(0).sample(range(len(lines)), count))
    return [dict(zip(("text", "label"), lines[i].split("\t"), strict=True)) for i in chosen]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtypes", default="fp32,auto")
    args = parser.parse_args()
    from ftpe_magics import Session

    train = rows(2000)
    table = []
    for dtype in args.dtypes.split(","):
        session = Session(log=lambda message: None).load(dtype=dtype)
        session.config.store = ""
        started = time.perf_counter()
        adapter = session.finetune("Review: {text}\nSentiment: {label}", train, f"searched-{dtype}", method="lora",
                                   search=2, max_steps=10, label_names="0=negative,1=positive")
        seconds = time.perf_counter() - started
        checks = [record for record in adapter.history if "eval_accuracy" in record]
        trials = adapter.search_log or []
        chosen = next((trial for trial in trials if trial.get("best")), {})
        table.append({"dtype": dtype, "training_dtype": session.status()["training dtype"],
                      "search_seconds": round(seconds, 1), "chosen_train_seconds": round(adapter.train_seconds, 1),
                      "validations": len(checks), "examples_per_validation": [c.get("eval_examples") for c in checks],
                      "chosen_trial": {key: value for key, value in chosen.items() if key not in ("state", "best")},
                      "val_accuracy": adapter.best_metric})
        session.unload(quiet=True)
    report("validation", table, {"command": "%%finetune --method lora --search 2 --max-steps 10 (2,000 SST-2)",
                                 "before_issue_26_minutes": 14})


if __name__ == "__main__":
    main()
