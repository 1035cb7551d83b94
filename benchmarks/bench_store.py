"""What the run store costs and what its result cache saves, on the default model and SST-2.

Targets (issue 11): recording adds under 5% to a warm %%prompt and under 1% to a %%compare of 200
examples (each against the store off, in the same run, interleaved so both see the same machine);
a cached %%compare of the 872 SST-2 dev examples returns in under 0.5 s. Issue 26: in a new kernel, a
%%compare whose conditions (a zero-shot line and an ``adapter`` line) are all in the store returns in under
0.5 s with no model loaded, against the same comparison computed in a new kernel (each a fresh process).

    python benchmarks/bench_store.py [--data ../shared/data] [--cells 20] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import report

from ftpe_magics import Session
from ftpe_magics.engine.data.examples import load_examples

CONDITION = "zero: prompt Review: {text}\\nSentiment:"
SST2_NAMES = "0=negative,1=positive"


def timed(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def paired(session: Session, store: str, call, repeats: int) -> tuple[float, float]:
    """Median seconds with the store off and on, alternating so drift hits both alike."""
    off, on = [], []
    for _ in range(repeats):
        session.config.store = ""
        off.append(timed(call))
        session.config.store = store
        on.append(timed(call))
    return statistics.median(off), statistics.median(on)


ADAPTER_LINES = CONDITION + "\na: adapter lora"
NEW_KERNEL = """
import json, sys, time
started = time.perf_counter()
from ftpe_magics import Session
import pandas  # a notebook that reads data has it; the first CSV/TSV read in a process imports it (about 0.5 s)
imported = time.perf_counter()
session = Session(log=lambda message: None)
session.config.store = sys.argv[1]
session.compare(sys.argv[2], sys.argv[3], label_names=sys.argv[4], limit=200, no_cache=sys.argv[5] == "1")
done = time.perf_counter()
print(json.dumps({"import_s": imported - started, "compare_s": done - imported, "model_loaded": session.loaded,
                  "peft_imported": "peft" in sys.modules}))
"""


def new_kernel(store: str, eval_file: str, no_cache: bool) -> dict:
    """One %%compare in a fresh process (a new kernel): the import, then the comparison, timed apart."""
    output = subprocess.run([sys.executable, "-c", NEW_KERNEL, store, ADAPTER_LINES, eval_file, SST2_NAMES,
                             "1" if no_cache else "0"], capture_output=True, text=True, check=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def cached_in_new_kernel(session: Session, data: str, folder: str, repeats: int) -> dict:
    """A zero-shot and an adapter line on 200 SST-2 dev examples in new kernels: computed (--no-cache: the model
    and the adapter loaded, every example scored), then read back whole; medians of ``repeats`` processes each."""
    store = str(Path(folder) / "new-kernel.sqlite")
    eval_file = f"{data}/sst2/dev.tsv"
    session.config.store = store
    train = load_examples(f"{data}/sst2/train.tsv", label_names=SST2_NAMES).head(256)
    session.finetune("Review: {text}\nSentiment: {label}", train, "lora", max_steps=10, batch_size=8)
    computed = [new_kernel(store, eval_file, no_cache=True) for _ in range(repeats)]  # each records the lines
    cached = [new_kernel(store, eval_file, no_cache=False) for _ in range(repeats)]
    median = lambda rows, key: statistics.median(row[key] for row in rows)  # noqa: E731
    return {"case": "new kernel: %%compare zero-shot + adapter, 200 SST-2: computed vs all cached",
            "store_off_s": median(computed, "compare_s"), "store_on_s": median(cached, "compare_s"),
            "overhead_pct": None, "speedup": median(computed, "compare_s") / median(cached, "compare_s"),
            "import_s": median(cached, "import_s"), "model_loaded": any(r["model_loaded"] for r in cached),
            "peft_imported": any(r["peft_imported"] for r in cached), "target": "cached < 0.5 s, no model loaded"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--cells", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    dev = load_examples(f"{args.data}/sst2/dev.tsv", label_names=SST2_NAMES)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        store = str(Path(folder) / "runs.sqlite")
        session = Session(log=lambda message: None).load()
        session.prompt("Write one sentence about the sea.", max_new_tokens=16)  # warm-up
        off, on = paired(session, store, lambda: session.prompt("Write one sentence about the sea.",
                                                                max_new_tokens=16), args.cells)
        rows.append({"case": "warm %%prompt, 16 new tokens", "store_off_s": off, "store_on_s": on,
                     "overhead_pct": 100 * (on / off - 1), "target": "< 5%"})
        first200 = dev.head(200)
        off, on = paired(session, store, lambda: session.compare(CONDITION, first200, no_cache=True), args.repeats)
        rows.append({"case": "%%compare zero-shot, 200 SST-2 (recorded, not cached)", "store_off_s": off,
                     "store_on_s": on, "overhead_pct": 100 * (on / off - 1), "target": "< 1%"})
        session.config.store = store
        fresh = timed(lambda: session.compare(CONDITION, dev, no_cache=True))
        cached = statistics.median(timed(lambda: session.compare(CONDITION, dev)) for _ in range(5))
        rows.append({"case": "%%compare zero-shot, 872 SST-2: fresh vs cached", "store_off_s": fresh,
                     "store_on_s": cached, "overhead_pct": None, "speedup": fresh / cached, "target": "cached < 0.5 s"})
        size = Path(store).stat().st_size
        rows.append(cached_in_new_kernel(session, args.data, folder, args.repeats))
    report("store", rows, {"store_bytes_after": size})


if __name__ == "__main__":
    main()
