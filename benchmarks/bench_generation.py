"""Prompt or fine-tune on a generation task: SNIPS slots (utterance -> its slots as a JSON object), default model.

At each training-set size n (nested draws of one seeded shuffle of the pool) and on the same held-out requests,
scored with ``--metric json`` (field-level F1 of the first JSON object, and ``valid_rate``, the share of outputs that
held one): zero-shot with instructions through the chat template; few-shot with the k = 4 and k = 8 most similar
training requests as demonstrations; LoRA on the same template, the loss on the answer only, every answer ending
with the end-of-sequence token. The verdict compares the best of each side. Then the cost of generating on this
task: the same prompts generated in length-sorted batches and one by one (tokens per second of each, same outputs).
This runs the same ``Session.compare`` the ``%%compare`` magic runs; results go to a run store (--store), so a
second run, or examples/05_extraction_prompt_vs_finetune.ipynb pointed at the same store, reads them back.

    python benchmarks/bench_generation.py [--sizes 16,64,256,1024] [--eval-size 100] [--store PATH]
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

from common import report

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "snips_slots"
INSTRUCTIONS = ("Extract the slots of the request as one JSON object on one line: each slot name maps to the "
                "words of the request that fill it.")
TEMPLATE = "Request: {text}\nSlots: {label}"


def sample_rows(path: Path, count: int, seed: int) -> list[dict]:
    """A seeded sample of a TSV file's rows (text, slots as the label), in file order."""
    lines = path.read_text().splitlines()[1:]
    chosen = sorted(random.Random(seed).sample(range(len(lines)), min(count, len(lines))))
    return [dict(zip(("text", "label"), lines[i].split("\t")[:2], strict=True)) for i in chosen]


def cell(epochs: float) -> str:
    """The %%compare cell: the same text the notebook holds."""
    template = TEMPLATE.replace("\n", "\\n")
    return "\n".join([
        f"zero: prompt {INSTRUCTIONS}\\n\\nRequest: {{text}}\\nSlots:",
        "fs4: fewshot slots k=4 select=similar",
        "fs8: fewshot slots k=8 select=similar",
        f"lora: finetune lora epochs={epochs:g} {template}",
    ])


def generation_throughput(session, prompts: list[str], batch_size: int) -> list[dict]:
    """The same prompts generated in length-sorted batches and one by one: seconds, tokens generated per second
    and whether the outputs are the same."""
    from ftpe_magics import GenerationSettings
    from ftpe_magics.engine.inference.generation import generate_texts

    rows, outputs = [], {}
    for size in (batch_size, 1):
        settings = GenerationSettings(max_new_tokens=64, batch_size=size, raw=True)
        started = time.perf_counter()
        run = generate_texts(session.model, session.tokenizer, prompts, settings, stop="object")
        seconds = time.perf_counter() - started
        outputs[size] = run.outputs
        rows.append({"batch_size": size, "prompts": len(prompts), "seconds": round(seconds, 2),
                     "tokens_generated": round(sum(run.new_tokens), 1),
                     "tokens_per_second": round(sum(run.new_tokens) / seconds, 1)})
    rows[0]["speedup_vs_one_by_one"] = round(rows[1]["seconds"] / rows[0]["seconds"], 2)
    rows[0]["same_outputs"] = outputs[batch_size] == outputs[1]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="16,64,256,1024")
    parser.add_argument("--eval-size", type=int, default=100)
    parser.add_argument("--pool", type=int, default=2000)
    parser.add_argument("--epochs", type=float, default=2)
    parser.add_argument("--throughput-prompts", type=int, default=32)
    parser.add_argument("--store", default=".ftpe/runs.sqlite", help="The run store: results already in it are read "
                                                                     "back, not recomputed.")
    args = parser.parse_args()
    from ftpe_magics.engine.config import Ftpe
    from ftpe_magics.engine.session import Session

    session = Session(Ftpe(store=args.store), log=print).load()
    pool = sample_rows(DATA / "train.tsv", args.pool, seed=0)
    held_out = sample_rows(DATA / "test.tsv", args.eval_size, seed=1)
    session.fewshot(f"{INSTRUCTIONS}\n\n{TEMPLATE}", pool, held_out[:4], name="slots", k=4, select="similar",
                    metric="json")
    started = time.perf_counter()
    result = session.compare(cell(args.epochs), held_out, train=pool, sizes=args.sizes, metric="json")
    seconds = time.perf_counter() - started
    table = result.curve.to_pandas()
    keep = ("condition", "n", "accuracy", "accuracy_low", "accuracy_high", "valid_rate", "tokens_generated",
            "latency_ms", "prompt_tokens", "train_seconds", "wall_seconds")
    rows = [{k: (round(row[k], 4) if isinstance(row.get(k), float) else row.get(k)) for k in keep}
            for row in table.to_dict("records")]
    prompts = [f"{INSTRUCTIONS}\n\nRequest: {row['text']}\nSlots:" for row in held_out[:args.throughput_prompts]]
    throughput = generation_throughput(session, prompts, batch_size=session.config.batch_size)
    verdict = result.verdict().sentences
    report("generation", rows, {"settings": vars(args), "throughput": throughput, "verdict": verdict,
                                "crossover": result.curve.crossover().sentence, "seconds": round(seconds, 1),
                                "pool": len(pool), "eval": len(held_out), "cell": cell(args.epochs)})
    for row in throughput:
        print(row)
    print("\n".join(verdict))


if __name__ == "__main__":
    main()
