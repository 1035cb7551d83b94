"""When does fine-tuning win? Learning curves on SST-2 (2 labels) and CLINC150 (150 labels) with the default model.

At each training-set size n (16, 64, 256, 1024: nested draws of one seeded shuffle of the pool) and on the same
held-out examples: zero-shot; a few-shot search (demonstrations, order, k including 0, calibration on or off) on
one validation split of those n (``cv=1``) next to the same search cross-validated (the default: 5 folds while n
<= 512); the linear probe and the classification head; LoRA with fixed settings; and LoRA with an Optuna search
(TPE, median pruning, a time budget per size) on a validation split of those n. The verdict compares the best of
each side chosen on the training pool. Then ``--sizes auto`` on SST-2 (zero-shot, the cross-validated search, the
probe and LoRA, under --auto-minutes): sizes the fixed curve ran are read from the run store, the others are run,
and the bracket of the crossover is reported. This runs the same ``Session.compare`` the ``%%compare`` magic runs.

CPU note: LoRA trains --epochs 2 passes of 8-example steps at every size (4 steps at n=16, 256 at n=1024), and
each LoRA search gets --budget-minutes 2 per size: at the largest sizes the budget ends the search (and its running
trial) early, which the trials table shows. Every condition's wall time (search and training included) is in the
table, and each curve's wall time with the tokens its scoring ran and reused (shared work) is in the JSON. Results
go to a run store (--store), so a second run, or examples/04_when_does_finetuning_win.ipynb pointed at the same
store, reads every condition back instead of recomputing it.

    python benchmarks/bench_learning_curve.py [--datasets sst2,clinc] [--sizes 16,64,256,1024] [--eval-size N]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from common import RESULTS, report

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
# CLINC150 scores 150 label continuations per query (about 0.5 s each on 2 CPU cores, against 0.06 s for SST-2's
# two), so its held-out set, its searches' validation splits and its validations during training are smaller
TASKS = {
    "sst2": {"folder": "sst2", "eval": "dev.tsv", "eval_size": 200, "pool": 2000, "names": "0=negative,1=positive",
             "template": "Review: {text}\nSentiment: {label}", "zero": "Review: {text}\\nSentiment:",
             "search_k": "0,1,2,4,8", "candidates": 6, "val_split": 0.2, "eval_steps": 32, "auto": True},
    "clinc": {"folder": "clinc", "eval": "test.tsv", "eval_size": 100, "pool": 3000, "names": None,
              "template": "Request: {text}\nIntent: {label}", "zero": "Request: {text}\\nIntent:",
              "search_k": "0,2,4,8,16", "candidates": 4, "val_split": 0.1, "eval_steps": 48, "auto": False},
}


def sample_rows(path: Path, count: int, seed: int) -> list[dict]:
    """A seeded sample of a TSV file's rows (text, label), in file order."""
    lines = path.read_text().splitlines()[1:]
    chosen = sorted(random.Random(seed).sample(range(len(lines)), min(count, len(lines))))
    return [dict(zip(("text", "label"), lines[i].split("\t"), strict=True)) for i in chosen]


def body(task: dict, epochs: float, trials: int, budget: float) -> str:
    """The %%compare cell: the same text a notebook would hold."""
    template = task["template"].replace("\n", "\\n")
    training = f"epochs={epochs}"
    search = f"search={task['candidates']} search-k={task['search_k']}"
    return "\n".join([
        f"zero: prompt {task['zero']}",
        f"fewshot-split: fewshot fs {search} cv=1 val-split={task['val_split']}",
        f"fewshot-cv: fewshot fs {search}",
        f"probe: finetune probe val-split=0.2 {template}",
        f"head: finetune head val-split=0.2 {template}",
        f"lora: finetune lora {training} {template}",
        f"lora-search: finetune lora search={trials} budget-minutes={budget:g} val-split={task['val_split']} "
        f"{training} eval-steps={task['eval_steps']} {template}",
    ])


AUTO_LINES = ("zero:", "fewshot-cv:", "probe:", "lora:")  # the auto curve's lines: the crossover's contenders


def timed_compare(session, cell: str, held_out: list, pool: list, sizes: str, **options) -> tuple:
    """One curve, with its wall time and the scoring tokens it ran and reused (its shared work)."""
    started = time.perf_counter()
    with session.sharing_work() as shared:
        result = session.compare(cell, held_out, train=pool, sizes=sizes, **options)
    return result, {"seconds": round(time.perf_counter() - started, 1), "tokens_run": shared.tokens_run,
                    "tokens_reused": shared.tokens_reused}


def run_task(session, name: str, args) -> dict:
    task = TASKS[name]
    folder = DATA / task["folder"]
    pool = sample_rows(folder / "train.tsv", task["pool"], seed=0)
    held_out = sample_rows(folder / task["eval"], args.eval_size or task["eval_size"], seed=1)
    data = {"label_names": task["names"]} if task["names"] else {}
    session.fewshot(task["template"], pool, held_out, name="fs", k=4, select="balanced", **data)
    cell = body(task, args.epochs, args.trials, args.budget_minutes)
    sizes = args.clinc_sizes if name == "clinc" else args.sizes
    result, cost = timed_compare(session, cell, held_out, pool, sizes, **data)
    seconds = cost["seconds"]
    auto = None
    if task["auto"] and args.auto_minutes > 0:
        lines = "\n".join(line for line in cell.splitlines() if line.startswith(AUTO_LINES))
        hunted, auto_cost = timed_compare(session, lines, held_out, pool, "auto", budget_minutes=args.auto_minutes,
                                          **data)
        auto = {"sizes": hunted.curve.measured_sizes(), "bracket": hunted.curve.bracket,
                "crossover": hunted.curve.crossover().sentence, **auto_cost}
    table = result.curve.to_pandas()
    png = RESULTS / f"learning_curve_{name}.png"
    from ftpe_magics.display.plots import learning_curve_plot

    png.write_bytes(learning_curve_plot(table, f"{name}: accuracy against labelled examples"))
    rows = [{"dataset": name, **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}}
            for row in table.to_dict("records")]
    return {"rows": rows, "crossover": result.curve.crossover().sentence, "verdict": result.verdict().sentences,
            "seconds": seconds, "shared_work": cost, "auto": auto, "cell": cell, "pool": len(pool),
            "eval": len(held_out)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="sst2,clinc")
    parser.add_argument("--sizes", default="16,64,256,1024")
    parser.add_argument("--clinc-sizes", default="16,64", help="CLINC150's sizes: its cross-validated search "
                                                                   "scores 150 labels per pool example")
    parser.add_argument("--eval-size", type=int, default=None, help="held-out examples (default: 200 for SST-2, "
                                                                     "100 for CLINC150)")
    parser.add_argument("--epochs", type=float, default=2)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--budget-minutes", type=float, default=2)
    parser.add_argument("--auto-minutes", type=float, default=10, help="The SST-2 auto curve's budget (0: none).")
    parser.add_argument("--store", default=".ftpe/runs.sqlite", help="The run store: results already in it are read "
                                                                     "back, not recomputed.")
    args = parser.parse_args()
    from ftpe_magics.engine.config import Ftpe
    from ftpe_magics.engine.session import Session

    session = Session(Ftpe(store=args.store), log=print).load()
    outcomes = {name: run_task(session, name, args) for name in args.datasets.split(",")}
    for name, outcome in outcomes.items():
        if outcome["auto"]:
            print(f"{name} auto curve: sizes {outcome['auto']['sizes']}, {outcome['auto']['crossover']}")
    rows = [row for outcome in outcomes.values() for row in outcome["rows"]]
    keep = ("dataset", "condition", "n", "accuracy", "accuracy_low", "accuracy_high", "wall_seconds", "train_seconds",
            "prompt_tokens", "latency_ms", "peak_memory_mb")
    report("learning_curve", [{k: row[k] for k in keep} for row in rows],
           {"settings": vars(args), "outcomes": outcomes})
    for name, outcome in outcomes.items():
        print(f"\n{name}: {outcome['seconds']:.0f} s\n" + "\n".join(outcome["verdict"]))
    print(json.dumps({name: outcome["crossover"] for name, outcome in outcomes.items()}, indent=1))


if __name__ == "__main__":
    main()
