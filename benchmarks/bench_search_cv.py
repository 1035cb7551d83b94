"""What cross-validation costs and buys in the few-shot search: ``--cv 5`` against ``--cv 1`` (one 20% split).

On SST-2 with the default model, at pool sizes n (nested draws of one seeded shuffle of the training file), a
``%%fewshot --search 6`` from k=4 ``balanced``, judged by each way, interleaved in one run with the same seeds;
then the chosen configuration on the same held-out dev reviews, next to the zero-shot prompt with the same
template. Reported per n and way: the search's wall time, the examples scored while searching, the chosen k and
calibration, its validation and eval accuracy, and the exact McNemar p of the chosen prompt against zero-shot.
Each way runs twice, with the call's shared work (the default: a context scored before in the call is read back,
a prefix starts from the cached one it shares most with) and without it (every scoring call on its own, as
before 0.5), and the tokens the model ran per candidate are counted for both: the same choices, less work.

    python benchmarks/bench_search_cv.py [--sizes 16,64] [--eval-size 200]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import random
import time
from pathlib import Path

from common import report

from ftpe_magics import Session
from ftpe_magics.engine.evaluation.stats import mcnemar_p

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "sst2"
TEMPLATE = "Review: {text}\nSentiment: {label}"
NAMES = "0=negative,1=positive"


def rows(path: Path, count: int, seed: int) -> list[dict]:
    lines = path.read_text().splitlines()[1:]
    chosen = random.Random(seed).sample(range(len(lines)), min(count, len(lines)))
    return [dict(zip(("text", "label"), lines[i].split("\t"), strict=True)) for i in chosen]


@contextlib.contextmanager
def counted_tokens():
    """The tokens every label-scoring call of the evaluator ran (padding and prefixes included)."""
    from ftpe_magics.engine.evaluation import evaluator

    real, total = evaluator.label_logprobs, [0]

    def counting(*args, **kwargs):
        scored = real(*args, **kwargs)
        total[0] += scored.tokens_run
        return scored

    evaluator.label_logprobs = counting
    try:
        yield total
    finally:
        evaluator.label_logprobs = real


@contextlib.contextmanager
def sharing(on: bool):
    """The call's shared work as the session has it (on), or none (off: the baseline, every call on its own)."""
    from ftpe_magics.engine.workbench import Workbench

    real = Workbench.scoring_share
    if not on:
        Workbench.scoring_share = property(lambda self: None)
    try:
        yield
    finally:
        Workbench.scoring_share = real


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="16,64")
    parser.add_argument("--eval-size", type=int, default=200)
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    pool, held_out = rows(DATA / "train.tsv", max(sizes), 0), rows(DATA / "dev.tsv", args.eval_size, 1)
    session = Session(log=lambda message: None).load()
    session.config.store = ""
    zero = session.compare("zero: prompt Review: {text}\\nSentiment:", held_out, label_names=NAMES).conditions[0]
    table = []
    # interleaved: the same seeds, one after the other
    for size, cv, shared in itertools.product(sizes, (1, 5), (False, True)):
        with counted_tokens() as tokens, sharing(shared):
            started = time.perf_counter()
            result = session.fewshot(TEMPLATE, pool[:size], held_out, name=f"n{size}-cv{cv}", k=4,
                                     select="balanced", search=6, cv=cv, label_names=NAMES, no_cache=True)
            seconds = time.perf_counter() - started
        chosen = next(row for row in result.search_log if row["best"])
        scored = len(result.search_log) * (size if cv > 1 else round(0.2 * size))
        condition = result.conditions[0]
        table.append({"n": size, "cv": cv, "shared_work": shared, "seconds": round(seconds, 1),
                      "tokens_per_candidate": round(tokens[0] / len(result.search_log)),
                      "examples_scored_searching": scored,
                      "chosen_k": chosen["k"], "chosen_calibrate": chosen["calibrate"],
                      "val_accuracy": round(chosen["val_accuracy"], 3),
                      "eval_accuracy": round(condition.accuracy, 3),
                      "zero_shot_eval": round(zero.accuracy, 3),
                      "p_vs_zero_shot": round(mcnemar_p(condition.correct, zero.correct), 4)})
    report("search_cv", table, {"task": "sst2", "eval_size": args.eval_size, "candidates": 6,
                                "model": "SmolLM2-135M-Instruct (fp32)"})


if __name__ == "__main__":
    main()
