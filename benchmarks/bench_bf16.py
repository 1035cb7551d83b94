"""bf16 on a CPU that computes it natively: scoring, generation and LoRA training in fp32, with bf16 weights, and
with fp32 weights under ``torch.autocast("cpu", dtype=torch.bfloat16)``, with the share of predictions that flip.

The default model on this machine's CPU (the JSON records whether it has AVX512-BF16 or AMX). For each of
SST-2 dev (2 labels), CLINC150 dev (150) and SNIPS dev (7): the packed label scorer's tokens per second in each
mode, the share of held-out predictions that differ from fp32's and the largest change of a label
log-probability. Generation: greedy tokens per second on SNIPS prompts. Training: LoRA on SST-2 (same data,
steps, batch size and seed) in a separate process per mode, tokens per second and peak memory. The modes are
interleaved (each round runs all three) and each figure is the median over --rounds.

    python benchmarks/bench_bf16.py [--rounds 2] [--examples 200] [--train-steps 24]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from common import report

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
TASKS = {"sst2": ("sst2/dev.tsv", "Review: {text}\nSentiment:", {"0": "negative", "1": "positive"}),
         "clinc": ("clinc/dev.tsv", "Request: {text}\nIntent:", None),
         "snips": ("snips/dev.tsv", "Utterance: {text}\nIntent:", None)}
MODES = ("fp32", "bf16 weights", "fp32 + autocast")


def rows(path: str, count: int, seed: int = 1) -> list[tuple[str, str]]:
    lines = (DATA / path).read_text().splitlines()[1:]
    chosen = sorted(random.Random(seed).sample(range(len(lines)), min(count, len(lines))))
    return [tuple(lines[i].split("\t")[:2]) for i in chosen]


def native_bf16() -> dict:
    flags = Path("/proc/cpuinfo").read_text().split() if Path("/proc/cpuinfo").is_file() else []
    return {"avx512_bf16": "avx512_bf16" in flags, "amx_bf16": "amx_bf16" in flags}


def in_mode(mode: str):
    return torch.autocast("cpu", dtype=torch.bfloat16) if mode == "fp32 + autocast" else contextlib.nullcontext()


def scoring(models: dict, tokenizer, examples: int, rounds: int) -> list[dict]:
    from ftpe_magics.engine.inference.scoring import label_logprobs

    out = []
    for task, (path, template, names) in TASKS.items():
        data = rows(path, examples if task != "clinc" else examples // 2)
        every = {line.split("\t")[1] for line in (DATA / path).read_text().splitlines()[1:]}
        labels = sorted(names.get(label, label) for label in every) if names else sorted(every)
        contexts = [template.format(text=text) for text, _ in data]
        continuations = [" " + label for label in labels]
        speeds: dict[str, list[float]] = {mode: [] for mode in MODES}
        scores = {}
        for _ in range(rounds):
            for mode in MODES:
                with in_mode(mode):
                    scored = label_logprobs(models[mode], tokenizer, contexts, continuations)
                speeds[mode].append(scored.tokens_run / scored.seconds)
                scores[mode] = scored.logprobs
        exact = scores["fp32"].argmax(1)
        for mode in MODES:
            out.append({"part": f"scoring {task} ({len(labels)} labels, {len(contexts)} examples)", "mode": mode,
                        "tokens_per_s": statistics.median(speeds[mode]),
                        "speedup": statistics.median(speeds[mode]) / statistics.median(speeds["fp32"]),
                        "flipped": float(np.mean(scores[mode].argmax(1) != exact)),
                        "max_logprob_change": float(np.abs(scores[mode] - scores["fp32"]).max())})
    return out


def generation(models: dict, tokenizer, rounds: int) -> list[dict]:
    from ftpe_magics.engine.inference.generation import GenerationSettings, generate_texts

    prompts = [f"Utterance: {text}\nIntent:" for text, _ in rows("snips/dev.tsv", 32)]
    settings = GenerationSettings(max_new_tokens=16, raw=True, temperature=0.0, batch_size=16)
    speeds: dict[str, list[float]] = {mode: [] for mode in MODES}
    texts = {}
    for _ in range(rounds):
        for mode in MODES:
            with in_mode(mode):
                started = time.perf_counter()
                run = generate_texts(models[mode], tokenizer, prompts, settings, stop=None)
                seconds = time.perf_counter() - started
            new_tokens = sum(len(tokenizer(s[0], add_special_tokens=False)["input_ids"]) for s in run.outputs)
            speeds[mode].append(new_tokens / seconds)
            texts[mode] = [s[0] for s in run.outputs]
    return [{"part": "generation (32 SNIPS prompts, 16 new tokens, greedy)", "mode": mode,
             "tokens_per_s": statistics.median(speeds[mode]),
             "speedup": statistics.median(speeds[mode]) / statistics.median(speeds["fp32"]),
             "flipped": float(np.mean([a != b for a, b in zip(texts[mode], texts["fp32"], strict=True)]))}
            for mode in MODES]


def train_child(mode: str, steps: int) -> None:
    """One LoRA run in this process: the base in the mode's dtype, the adapter's weights in fp32 (peft)."""
    from ftpe_magics import Session
    from ftpe_magics.engine.finetune import FinetuneOptions
    from ftpe_magics.engine.finetune.train import prepare, train_adapter
    from ftpe_magics.engine.prompting.templates import ExampleTemplate

    session = Session(log=lambda m: None).load(dtype="bf16" if mode == "bf16 weights" else "fp32")
    names = TASKS["sst2"][2]
    data = session.examples([{"text": t, "label": names[label]} for t, label in rows("sst2/train.tsv", 512, 0)],
                            "--train")
    options = FinetuneOptions(method="lora", max_steps=steps, batch_size=8, max_len=128, lr=1e-3, seed=0,
                              logging_steps=8)
    job = prepare(session.tokenizer, "bench", ExampleTemplate("Review: {text}\nSentiment: {label}"), data, None,
                  options)
    loaded = session.loaded_model
    with in_mode(mode):
        adapter = train_adapter(loaded.model, loaded.tokenizer, loaded.location, loaded.device, job)
    losses = [r["loss"] for r in adapter.history if "loss" in r]
    print("RESULT " + json.dumps({"tokens_per_s": adapter.train_tokens / adapter.train_seconds,
                                  "final_loss": losses[-1] if losses else None,
                                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def training(rounds: int, steps: int) -> list[dict]:
    results: dict[str, list[dict]] = {mode: [] for mode in MODES}
    for _ in range(rounds):
        for mode in MODES:
            out = subprocess.run([sys.executable, __file__, "--train-child", mode, "--train-steps", str(steps)],
                                 capture_output=True, text=True, check=True)
            results[mode].append(json.loads(next(line for line in out.stdout.splitlines()
                                                 if line.startswith("RESULT "))[7:]))
    base = statistics.median(r["tokens_per_s"] for r in results["fp32"])
    return [{"part": f"LoRA training (SST-2, {steps} steps of 8)", "mode": mode,
             "tokens_per_s": statistics.median(r["tokens_per_s"] for r in results[mode]),
             "speedup": statistics.median(r["tokens_per_s"] for r in results[mode]) / base,
             "final_loss": results[mode][-1]["final_loss"],
             "peak_rss_mb": max(r["peak_rss_mb"] for r in results[mode])} for mode in MODES]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--examples", type=int, default=200)
    parser.add_argument("--train-steps", type=int, default=24)
    parser.add_argument("--train-child", choices=MODES)
    args = parser.parse_args()
    if args.train_child:
        train_child(args.train_child, args.train_steps)
        return
    from ftpe_magics import Session

    session = Session(log=lambda m: None).load(dtype="fp32")
    fp32 = session.base_model.eval()
    models = {"fp32": fp32, "bf16 weights": copy.deepcopy(fp32).to(torch.bfloat16), "fp32 + autocast": fp32}
    table = scoring(models, session.tokenizer, args.examples, args.rounds)
    table += generation(models, session.tokenizer, args.rounds)
    del models["bf16 weights"]
    table += training(args.rounds, args.train_steps)
    report("bf16", table, {"native_bf16": native_bf16(), "settings": vars(args)})


if __name__ == "__main__":
    main()
