"""Likelihood scoring against the naive loop, on real tasks with 2, 7 and 150 labels (default model, fp32).

Each case builds its prompts once; both methods score those very prompts. The naive loop (one
forward pass per example per label, no batching, no cache) takes hours on the 150-label cases, so
it runs on the first ``naive`` examples of each case: the ratio is per example (examples/s), and
on that subset the two methods' predictions and log-probabilities are compared. ``similar``
selection's one-off cost (embedding the pool) is reported apart from the per-query cost.

Targets (issue 10, this 2-core CPU): SST-2 4-shot balanced >= 10x with unchanged accuracy; CLINC150
zero-shot >= 20x; CLINC150 8-shot similar >= 30x; SNIPS 8-shot similar >= 8x.

    python benchmarks/bench_scoring.py [--cases sst2,clinc0,clinc8,snips8] [--data ../shared/data]

With ``--peer-python PY`` (a virtual environment holding lm-evaluation-harness, e.g. made by
``benchmarks/peer_env.sh``), each case also runs the peer's ``HFLM.loglikelihood`` on the first
``--peer-examples`` prompts with the same model, next to ours on the very same prompts, and reports the ratio
and the share of identical predictions.
"""

from __future__ import annotations

import argparse
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from common import report

from ftpe_magics import Session
from ftpe_magics.engine.data.examples import Examples, load_examples
from ftpe_magics.engine.inference.label_trie import build_trie
from ftpe_magics.engine.inference.scoring import label_logprobs, mean_pooled_embeddings, naive_label_logprobs
from ftpe_magics.engine.prompting.fewshot import FewShotConfig, select_demos
from ftpe_magics.engine.prompting.templates import ExampleTemplate, assemble

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


@dataclass(frozen=True)
class Case:
    name: str
    folder: str
    template: str
    k: int
    select: str
    limit: int
    naive: int
    label_names: str | None = None
    pool: int | None = None


CASES = {
    "sst2": Case("SST-2 4-shot balanced", "sst2", "Review: {text}\nSentiment: {label}", 4, "balanced", 872, 150,
                 "0=negative,1=positive"),
    "clinc0": Case("CLINC150 zero-shot", "clinc", "Query: {text}\nIntent: {label}", 0, "random", 300, 12),
    "clinc8": Case("CLINC150 8-shot similar", "clinc", "Query: {text}\nIntent: {label}", 8, "similar", 300, 2,
                   pool=3000),
    "snips8": Case("SNIPS 8-shot similar", "snips", "Query: {text}\nIntent: {label}", 8, "similar", 700, 20,
                   pool=3000),
}


def _pool(train: Examples, size: int | None) -> list[int]:
    """The whole training set in file order (as the earlier figures used it), or a seeded share of it."""
    order = list(range(len(train)))
    if not size:
        return order
    random.Random(0).shuffle(order)
    return order[:size]


def _prompts(session: Session, case: Case, train: Examples, dev: Examples) -> tuple[list[str], dict]:
    """The contexts every method scores, and the one-off and per-query costs of choosing demonstrations."""
    template = ExampleTemplate(case.template)
    pool = _pool(train, case.pool)
    cache: dict[str, np.ndarray] = {}
    costs = {"pool_embedding_s": 0.0, "query_embedding_ms": 0.0}

    def embed(texts: list[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in cache]
        started = time.perf_counter()
        if missing:
            cache.update(zip(missing, mean_pooled_embeddings(session.model, session.tokenizer, missing), strict=True))
        key = "pool_embedding_s" if len(missing) > len(dev) else "query_embedding_ms"
        costs[key] += (time.perf_counter() - started) * (1 if key == "pool_embedding_s" else 1000 / len(dev))
        return np.stack([cache[t] for t in texts])

    config = FewShotConfig(case.name, template, train, k=case.k, select=case.select)
    if case.select == "similar":
        embed([train.texts[i] for i in pool])  # the one-off cost first, so the rest is per query
    demos = select_demos(config, dev, pool, case.k, embed=embed)
    contexts = [assemble("", [template.demo(train.rows[i], train.labels[i]) for i in chosen], template.query(row))
                for row, chosen in zip(dev.rows, demos, strict=True)]
    return contexts, costs


PEER = Path(__file__).with_name("peer_lm_eval.py")


def run_peer(session: Session, contexts: list[str], continuations: list[str], python: str, batch_size: int) -> dict:
    """lm-evaluation-harness's ``HFLM.loglikelihood`` on the same prompts and model, in its own environment, next
    to ours on the very same prompts (one after the other: never two models computing at once)."""
    import json
    import subprocess
    import tempfile

    started = time.perf_counter()
    ours = label_logprobs(session.model, session.tokenizer, contexts, continuations, batch_size=batch_size)
    ours_s = time.perf_counter() - started
    with tempfile.NamedTemporaryFile("w", suffix=".json") as handle:
        json.dump({"contexts": contexts, "continuations": continuations}, handle)
        handle.flush()
        output = subprocess.run([python, str(PEER), handle.name, session.loaded_model.location, str(batch_size)],
                                capture_output=True, text=True, check=True).stdout
    peer = json.loads(output.strip().splitlines()[-1])
    theirs = np.asarray(peer["logprobs"])
    same = ours.logprobs.argmax(axis=1) == theirs.argmax(axis=1)
    return {"peer": f"lm-evaluation-harness {peer['version']} HFLM", "peer_examples": len(contexts),
            "peer_seconds": peer["seconds"], "ours_on_peer_examples_s": ours_s,
            "speedup_vs_peer": peer["seconds"] / ours_s, "same_predictions_as_peer": float(same.mean()),
            "max_abs_logprob_difference_vs_peer": float(np.abs(ours.logprobs - theirs).max())}


def run_case(session: Session, case: Case, data: Path, peer: tuple[str, int, int] | None = None) -> dict:
    train = load_examples(f"{data / case.folder}/train.tsv", label_names=case.label_names)
    dev = load_examples(f"{data / case.folder}/dev.tsv", label_names=case.label_names).head(case.limit)
    labels = sorted(set(train.label_set) | set(dev.label_set))
    contexts, costs = _prompts(session, case, train, dev)
    continuations = [ExampleTemplate(case.template).continuation(label) for label in labels]
    started = time.perf_counter()
    fast = label_logprobs(session.model, session.tokenizer, contexts, continuations)
    fast_s = time.perf_counter() - started
    started = time.perf_counter()
    naive = naive_label_logprobs(session.model, session.tokenizer, contexts[:case.naive], continuations)
    naive_s = time.perf_counter() - started
    predictions = [labels[i] for i in fast.logprobs.argmax(axis=1)]
    label_ids = [session.tokenizer(c, add_special_tokens=False)["input_ids"] for c in continuations]
    trie = build_trie(label_ids)
    return {
        "case": case.name, "labels": len(labels), "examples": len(dev), "naive_examples": case.naive,
        "ftpe_examples_per_s": len(dev) / fast_s, "naive_examples_per_s": case.naive / naive_s,
        "speedup": (len(dev) / fast_s) / (case.naive / naive_s),
        "accuracy": float(np.mean([p == r for p, r in zip(predictions, dev.labels, strict=True)])),
        "same_predictions_on_naive_subset": bool((fast.logprobs[:case.naive].argmax(1) == naive.argmax(1)).all()),
        "max_abs_logprob_difference": float(np.abs(fast.logprobs[:case.naive] - naive).max()),
        "context_tokens_per_example": float(np.mean(fast.prompt_tokens)), "trie_tokens": trie.size,
        "tokens_run_per_example": fast.tokens_run / len(dev), "floor_tokens_per_example": fast.floor_tokens / len(dev),
        "naive_tokens_per_example": float(np.mean([sum(p + len(c) for c in label_ids) for p in fast.prompt_tokens])),
        "ftpe_seconds": fast_s, "naive_seconds": naive_s, **costs,
        **(run_peer(session, contexts[:peer[1]], continuations, peer[0], peer[2]) if peer else {}),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--quick", action="store_true", help="a few examples per case: checks the script runs")
    parser.add_argument("--peer-python", default=None, help="the Python of a virtual environment with "
                                                           "lm-evaluation-harness: adds its HFLM on the same prompts")
    parser.add_argument("--peer-examples", type=int, default=30)
    parser.add_argument("--peer-batch-size", type=int, default=32)
    args = parser.parse_args()
    peer = (args.peer_python, args.peer_examples, args.peer_batch_size) if args.peer_python else None
    session = Session(log=lambda m: None).load()
    rows = []
    for key in args.cases.split(","):
        case = CASES[key]
        if args.quick:  # a smoke run of the script itself, not a measurement
            case = Case(case.name, case.folder, case.template, case.k, case.select, 12, 2, case.label_names,
                        case.pool and 300)
        row = run_case(session, case, Path(args.data), peer)
        rows.append(row)
        print({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
    shown = [{"case": r["case"], "labels": r["labels"], "n": r["examples"], "naive n": r["naive_examples"],
              "ftpe ex/s": r["ftpe_examples_per_s"], "naive ex/s": r["naive_examples_per_s"],
              "speedup": r["speedup"], "accuracy": r["accuracy"], "same preds": r["same_predictions_on_naive_subset"],
              "tokens run/ex": r["tokens_run_per_example"], "floor/ex": r["floor_tokens_per_example"],
              "naive tokens/ex": r["naive_tokens_per_example"], "pool embed s": r["pool_embedding_s"],
              "query embed ms": r["query_embedding_ms"],
              **({"peer n": r["peer_examples"], "vs peer": r["speedup_vs_peer"],
                  "same as peer": r["same_predictions_as_peer"]} if "peer" in r else {})} for r in rows]
    name = "scoring_quick" if args.quick else "scoring"
    shown, rows = _merged(name, shown, rows)  # a run of some cases keeps the others' figures
    report(name, shown, {"cases": rows, "model": "SmolLM2-135M-Instruct (default), fp32",
                         "baseline": "naive loop: one forward pass per example per label, same prompts"})


def _merged(name: str, shown: list[dict], rows: list[dict]) -> tuple[list[dict], list[dict]]:
    import json

    from common import RESULTS

    path = RESULTS / f"{name}.json"
    if not path.is_file():
        return shown, rows
    earlier = json.loads(path.read_text())
    fresh = {row["case"] for row in rows}
    keep_shown = [r for r in earlier.get("rows", []) if r.get("case") not in fresh]
    keep_rows = [r for r in earlier.get("cases", []) if r.get("case") not in fresh]
    order = list(CASES.values())
    rank = {case.name: i for i, case in enumerate(order)}
    return (sorted(keep_shown + shown, key=lambda r: rank.get(r["case"], 99)),
            sorted(keep_rows + rows, key=lambda r: rank.get(r["case"], 99)))


if __name__ == "__main__":
    main()
