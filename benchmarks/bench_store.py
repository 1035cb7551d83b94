"""What the run store costs and what its result cache saves, on the default model and SST-2.

Targets (issue 11): recording adds under 5% to a warm %%prompt and under 1% to a %%compare of 200
examples (each against the store off, in the same run, interleaved so both see the same machine);
a cached %%compare of the 872 SST-2 dev examples returns in under 0.5 s.

    python benchmarks/bench_store.py [--data ../shared/data] [--cells 20] [--repeats 3]
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
    report("store", rows, {"store_bytes_after": size})


if __name__ == "__main__":
    main()
