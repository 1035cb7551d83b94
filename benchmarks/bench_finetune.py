"""LoRA fine-tuning: throughput against a plain Trainer + peft run, and quality against few-shot prompting.

Targets (issues 4 and 26):
- throughput (real tokens per second) of %%finetune's LoRA at least equal to the plain Trainer + peft run a
  user would write, with dynamic padding (``DataCollatorForSeq2Seq``) and length-grouped batches, and
  reported next to the same run padded to a fixed length (the old, weaker baseline); same model, data, steps,
  batch size and seed. Each run is a separate process, so its peak memory is its own, and the three are
  interleaved (--rounds times A, B, C) so that a slow spell of the machine hits each of them alike;
- LoRA on 2,000 SST-2 training examples beats the best 4-shot prompting accuracy (random,
  balanced, similar; drawn from the same 2,000) on the full dev set.

- probe and head (issue 13) next to LoRA on SST-2 and CLINC150: accuracy, training seconds, trainable
  parameters.

    python benchmarks/bench_finetune.py [--part all|throughput|quality|classifiers] [--train-size 2000]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import report

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "sst2"
NAMES = "0=negative,1=positive"
TEMPLATE = "Review: {text}\nSentiment: {label}"
THROUGHPUT = {"examples": 512, "batch_size": 8, "max_steps": 48, "max_len": 128, "lr": 1e-3, "seed": 0}


def _train_rows(count: int, offset: int = 0) -> list[dict]:
    from ftpe_magics.engine.data.examples import load_examples

    data = load_examples(str(DATA / "train.tsv"), label_names=NAMES)
    return [{"text": row["text"], "label": label} for row, label in
            zip(data.rows[offset:offset + count], data.labels[offset:offset + count], strict=True)]


def run_ours() -> dict:
    from ftpe_magics import Session

    session = Session(log=lambda m: None).load()
    settings = THROUGHPUT
    rows = _train_rows(settings["examples"])
    from ftpe_magics.engine.finetune import FinetuneOptions
    from ftpe_magics.engine.finetune.observers import TrainingObserver
    from ftpe_magics.engine.finetune.train import prepare, train_adapter
    from ftpe_magics.engine.prompting.templates import ExampleTemplate

    class TokenCount(TrainingObserver):
        tokens = 0

        def step(self, step: int, tokens: int) -> None:
            self.tokens = tokens

    data = session.examples(rows, "--train")
    options = FinetuneOptions(method="lora", max_steps=settings["max_steps"], batch_size=settings["batch_size"],
                              max_len=settings["max_len"], lr=settings["lr"], seed=settings["seed"], raw=True,
                              logging_steps=10)
    job = prepare(session.tokenizer, "bench", ExampleTemplate(TEMPLATE), data, None, options)
    counter = TokenCount()
    loaded = session.loaded_model
    adapter = train_adapter(loaded.model, loaded.tokenizer, loaded.location, loaded.device, job, [counter])
    return {"seconds": adapter.train_seconds, "real_tokens": counter.tokens,
            "steps": adapter.steps, "trainable_params": adapter.trainable_params}


def run_baseline(dynamic: bool) -> dict:
    """The plain way: Trainer + peft LoRA on the answer-only loss; with ``dynamic`` the collator pads each batch
    to its longest row and batches are grouped by length (what a user following the peft docs writes), else
    every row is padded to --max-len and the default collator stacks them."""
    import tempfile

    import torch
    from datasets import Dataset
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments, default_data_collator

    from ftpe_magics import Session

    session = Session(log=lambda m: None).load()
    settings = THROUGHPUT
    tokenizer = session.tokenizer
    features = []
    for row in _train_rows(settings["examples"]):
        context = f"Review: {row['text']}\nSentiment:"
        context_ids = tokenizer(context)["input_ids"]
        answer_ids = tokenizer(" " + row["label"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        ids = (context_ids + answer_ids)[-settings["max_len"]:]
        labels = ([-100] * len(context_ids) + answer_ids)[-settings["max_len"]:]
        pad = 0 if dynamic else settings["max_len"] - len(ids)
        features.append({"input_ids": ids + [tokenizer.pad_token_id] * pad, "labels": labels + [-100] * pad,
                         "attention_mask": [1] * len(ids) + [0] * pad})
    model = get_peft_model(session.base_model, LoraConfig(task_type=TaskType.CAUSAL_LM, r=8, lora_alpha=16,
                                                          lora_dropout=0.05))
    torch.manual_seed(settings["seed"])
    with tempfile.TemporaryDirectory() as output:
        args = TrainingArguments(output_dir=output, per_device_train_batch_size=settings["batch_size"],
                                 learning_rate=settings["lr"], max_steps=settings["max_steps"], warmup_steps=0.1,
                                 logging_steps=10, save_strategy="no", report_to="none", disable_tqdm=True,
                                 use_cpu=not torch.cuda.is_available(), seed=settings["seed"],
                                 **({"train_sampling_strategy": "group_by_length"} if dynamic else {}))
        tokenizer.padding_side = "right"
        collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100) if dynamic else \
            default_data_collator
        real = []  # the real (unpadded) tokens of every batch trained, as ours counts them

        def counting(batch_features):
            batch = collator(batch_features)
            real.append(int(batch["attention_mask"].sum()))
            return batch

        trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_list(features), data_collator=counting)
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "real_tokens": sum(real), "steps": settings["max_steps"]}


RUNS = {"fixed": "plain Trainer + peft, fixed-length padding",
        "dynamic": "plain Trainer + peft, dynamic padding + length grouping",
        "ours": "%%finetune LoRA (dynamic padding, length grouping)"}


def child(part: str) -> None:
    result = run_ours() if part == "ours" else run_baseline(dynamic=part == "dynamic")
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result))


def throughput(rounds: int, parts: list[str]) -> list[dict]:
    """Each run ``rounds`` times, interleaved; each one's tokens/s is the median of its rounds (every round's
    figure is kept too, so the spread between rounds shows how much of a ratio is the machine's noise)."""
    measured: dict[str, list[dict]] = {part: [] for part in parts}
    for _ in range(rounds):
        for part in parts:
            out = subprocess.run([sys.executable, __file__, "--child", part], capture_output=True, text=True,
                                 check=True)
            measured[part].append(json.loads(next(line for line in out.stdout.splitlines()
                                                  if line.startswith("RESULT "))[7:]))
    rows = []
    for part in parts:
        speeds = [result["real_tokens"] / result["seconds"] for result in measured[part]]
        rows.append({"run": RUNS[part], "seconds": statistics.median(r["seconds"] for r in measured[part]),
                     "real_tokens": measured[part][0]["real_tokens"], "tokens_per_s": statistics.median(speeds),
                     "peak_rss_mb": max(r["peak_rss_mb"] for r in measured[part]), "rounds": rounds,
                     "round_tokens_per_s": [round(speed, 1) for speed in speeds]})
    speed = {part: row["tokens_per_s"] for part, row in zip(parts, rows, strict=True)}
    for other, label in (("dynamic", "ratio ours / dynamic baseline (target >= 1)"),
                         ("fixed", "ratio ours / fixed-length baseline")):
        if "ours" in speed and other in speed:
            rows.append({"run": label, "tokens_per_s": speed["ours"] / speed[other]})
    return rows


def quality(train_size: int, epochs: float) -> tuple[list[dict], dict]:
    from ftpe_magics import Session

    session = Session(log=lambda m: None).load()
    train = _train_rows(train_size)
    dev = str(DATA / "dev.tsv")
    rows = []
    for select in ("random", "balanced", "similar"):
        start = time.perf_counter()
        result = session.fewshot(TEMPLATE, train, dev, k=4, select=select, label_names=NAMES, name=f"fs4-{select}")
        rows.append({"condition": f"4-shot {select}", "accuracy": result.conditions[0].accuracy,
                     "seconds": time.perf_counter() - start, "trainable_params": 0})
    start = time.perf_counter()
    adapter = session.finetune(TEMPLATE, train, "lora-sst2", method="lora", epochs=epochs, batch_size=16,
                               logging_steps=20)
    compare = session.compare("lora: adapter lora-sst2", dev, label_names=NAMES)
    rows.append({"condition": f"LoRA ({train_size} examples, {epochs:g} epoch)",
                 "accuracy": compare.conditions[0].accuracy, "seconds": adapter.train_seconds,
                 "trainable_params": adapter.trainable_params})
    best_prompt = max(r["accuracy"] for r in rows[:-1])
    return rows, {"best_4shot": best_prompt, "lora": rows[-1]["accuracy"], "lora_beats_prompting":
                  rows[-1]["accuracy"] > best_prompt, "lora_train_seconds": adapter.train_seconds,
                  "total_seconds": time.perf_counter() - start}


def _clinc(train_size: int, dev_size: int) -> tuple[list[dict], list[dict]]:
    """A seeded share of CLINC150's training set (every intent) and the first dev examples."""
    import random

    from ftpe_magics.engine.data.examples import read_table

    folder = DATA.parent / "clinc"
    train = read_table(folder / "train.tsv")
    random.Random(0).shuffle(train)
    return train[:train_size], read_table(folder / "dev.tsv")[:dev_size]


def _classifier_rows(session, task: str, train, dev, names: str | None, epochs: float) -> list[dict]:
    template = "Review: {text}\nSentiment: {label}" if task == "SST-2" else "Query: {text}\nIntent: {label}"
    rows = []
    runs = [("probe", {"method": "probe"}), ("head", {"method": "head", "epochs": epochs, "batch_size": 16}),
            ("lora", {"method": "lora", "epochs": epochs, "batch_size": 16})]
    for method, options in runs:
        if task == "SST-2" and method == "lora":
            continue  # measured on the same data by --part quality (finetune_quality.json)
        name = f"{method}-{task}"
        adapter = session.finetune(template, train, name, label_names=names, logging_steps=20, **options)
        started = time.perf_counter()
        condition = session.compare(f"c: adapter {name}", dev, label_names=names).conditions[0]
        rows.append({"task": task, "method": method, "accuracy": condition.accuracy,
                     "train_seconds": adapter.train_seconds, "eval_seconds": time.perf_counter() - started,
                     "trainable_params": adapter.trainable_params})
        session.delete_adapter(name)
    return rows


def classifiers(train_size: int, clinc_train: int, clinc_dev: int, epochs: float) -> tuple[list[dict], dict]:
    """probe and head next to LoRA: SST-2 (first 2,000 train, 872 dev) and CLINC150 (a share, all 150 intents)."""
    from ftpe_magics import Session

    session = Session(log=lambda m: None).load()
    rows = _classifier_rows(session, "SST-2", _train_rows(train_size), str(DATA / "dev.tsv"), NAMES, epochs)
    quality = json.loads((Path(__file__).parent / "results" / "finetune_quality.json").read_text())
    lora = next(r for r in quality["rows"] if r["condition"].startswith("LoRA"))
    rows.append({"task": "SST-2", "method": "lora (from finetune_quality.json)", "accuracy": lora["accuracy"],
                 "train_seconds": lora["seconds"], "trainable_params": lora["trainable_params"]})
    train, dev = _clinc(clinc_train, clinc_dev)
    rows += _classifier_rows(session, "CLINC150", train, dev, None, epochs)
    return rows, {"sst2": {"train": train_size, "dev": 872}, "clinc150": {"train": clinc_train, "dev": clinc_dev,
                  "train_share": "seeded shuffle of the 18,000 training examples (all 150 intents)"},
                  "epochs": epochs, "batch_size": 16}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--part", choices=["all", "throughput", "quality", "classifiers"], default="all")
    parser.add_argument("--clinc-train", type=int, default=3000)
    parser.add_argument("--clinc-dev", type=int, default=300)
    parser.add_argument("--train-size", type=int, default=2000)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--child", choices=list(RUNS))
    parser.add_argument("--rounds", type=int, default=2, help="Throughput: interleaved rounds of the three runs.")
    parser.add_argument("--runs", default=",".join(RUNS), help="Throughput: which runs (fixed, dynamic, ours); a "
                                                               "subset writes finetune_throughput_subset.json")
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    if args.part in ("all", "throughput"):
        parts = args.runs.split(",")
        name = "finetune_throughput" if set(parts) == set(RUNS) else "finetune_throughput_subset"
        report(name, throughput(args.rounds, parts), {"settings": THROUGHPUT})
    if args.part in ("all", "quality"):
        rows, summary = quality(args.train_size, args.epochs)
        report("finetune_quality", rows, summary)
        print(summary)
    if args.part in ("all", "classifiers"):
        rows, summary = classifiers(args.train_size, args.clinc_train, args.clinc_dev, args.epochs)
        report("finetune_classifiers", rows, summary)


if __name__ == "__main__":
    main()
