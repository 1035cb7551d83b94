"""%%prompt overhead and --over batching on the default model, against plain transformers calls.

Targets (issue 2): a warm %%prompt cell costs at most 1.10x a direct ``model.generate`` with the
same inputs; 20 cells load the model once; 64 prompts with --over run at least 3x faster than the
same prompts one by one on a CPU. Also reports the first (converting) and cached load times.

    python benchmarks/bench_prompt.py [--cells 20] [--prompts 64] [--new-tokens 16]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
from common import median_seconds, report
from IPython.core.interactiveshell import InteractiveShell

from ftpe_magics import Session, get_session
from ftpe_magics.engine.inference.generation import render_prompts

TOPICS = ["the sea", "a long train journey", "learning to cook", "an old library", "a rainy city", "mountains",
          "a football match", "the first day of school"]


def load_times() -> dict:
    with tempfile.TemporaryDirectory() as cache:
        session = Session(log=lambda m: None)
        session.config.cache_dir = cache
        start = time.perf_counter()
        session.load()
        first = time.perf_counter() - start
        session.unload(quiet=True)
        start = time.perf_counter()
        session.load()
        cached = time.perf_counter() - start
    return {"first_load_with_conversion_s": first, "cached_load_s": cached}


def warm_cell_overhead(cells: int, new_tokens: int) -> dict:
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "ftpe_magics")
    session = get_session()
    session.log = lambda m: None
    shell.user_ns["topic"] = TOPICS[0]
    cell = f"%%prompt --max-new-tokens {new_tokens}\nWrite one sentence about {{topic}}."
    shell.run_cell(cell)  # loads the model once; warm-up
    loads_before = session.load_count
    model, tokenizer = session.model, session.tokenizer
    texts, add_special = render_prompts(tokenizer, [f"Write one sentence about {TOPICS[0]}."], None, False)
    inputs = tokenizer(texts, return_tensors="pt", add_special_tokens=add_special)

    def direct():
        with torch.inference_mode():
            model.generate(**inputs, max_new_tokens=new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)

    import contextlib
    import io

    def magic_cell():
        with contextlib.redirect_stdout(io.StringIO()):
            assert shell.run_cell(cell).success

    # interleave so drift in machine load hits both equally
    direct_times, magic_times = [], []
    for _ in range(cells):
        direct_times.append(median_seconds(direct, 1))
        magic_times.append(median_seconds(magic_cell, 1))
    import statistics

    direct_s, magic_s = statistics.median(direct_times), statistics.median(magic_times)
    return {"direct_generate_s": direct_s, "prompt_cell_s": magic_s, "ratio": magic_s / direct_s,
            "cells": cells, "model_loads_during_cells": session.load_count - loads_before}


def over_batching(prompts: int, new_tokens: int) -> dict:
    session = get_session()
    rows = [f"Write one sentence about {TOPICS[i % len(TOPICS)]} (number {i})." for i in range(prompts)]
    template = "{item}"
    start = time.perf_counter()
    batched = session.prompt(template, over=rows, max_new_tokens=new_tokens, batch_size=prompts)
    batched_s = time.perf_counter() - start
    start = time.perf_counter()
    single = [session.prompt(template, {"item": row}, max_new_tokens=new_tokens).text for row in rows]
    single_s = time.perf_counter() - start
    agree = sum(a == b for a, b in zip(batched.texts, single, strict=True)) / prompts
    return {"prompts": prompts, "batched_s": batched_s, "one_by_one_s": single_s, "speedup": single_s / batched_s,
            "greedy_outputs_identical": agree}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cells", type=int, default=20)
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=16)
    args = parser.parse_args()
    loads = load_times()
    warm = warm_cell_overhead(args.cells, args.new_tokens)
    over = over_batching(args.prompts, args.new_tokens)
    rows = [
        {"measure": "first load (GGUF conversion)", "value": loads["first_load_with_conversion_s"], "unit": "s"},
        {"measure": "cached load", "value": loads["cached_load_s"], "unit": "s"},
        {"measure": "model.generate direct (median)", "value": warm["direct_generate_s"], "unit": "s"},
        {"measure": "%%prompt warm cell (median)", "value": warm["prompt_cell_s"], "unit": "s"},
        {"measure": "%%prompt / generate ratio (target <= 1.10)", "value": warm["ratio"], "unit": "x"},
        {"measure": f"model loads during {args.cells} cells (target 0)", "value": warm["model_loads_during_cells"],
         "unit": ""},
        {"measure": f"--over {args.prompts} prompts batched", "value": over["batched_s"], "unit": "s"},
        {"measure": f"{args.prompts} prompts one by one", "value": over["one_by_one_s"], "unit": "s"},
        {"measure": "--over speedup (target >= 3 on CPU)", "value": over["speedup"], "unit": "x"},
        {"measure": "batched greedy outputs equal to one-by-one", "value": over["greedy_outputs_identical"],
         "unit": "share"},
    ]
    report("prompt", rows, {"loads": loads, "warm_cell": warm, "over": over, "new_tokens": args.new_tokens})


if __name__ == "__main__":
    main()
