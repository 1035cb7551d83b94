"""``%ftpe adapters`` and ``%ftpe history``: the session's adapters and runs with those the run store keeps."""

from __future__ import annotations

from ..persistence.recorder import parse_since
from ..workbench import Workbench

HISTORY_COLUMNS = ["id", "kind", "name", "created", "model", "status", "seconds", "summary"]


def adapters_table(bench: Workbench):
    """Adapters in the session, then those of the loaded base kept in the run store (with their status)."""
    import pandas as pd

    rows = [{**row, "stored": False} for row in bench.adapters.rows()]
    stored = bench.recorder.stored_adapters(bench.loaded_model.fingerprint) if bench.loaded else []
    for entry in stored:
        mine = next((row for row in rows if row["name"] == entry["name"]), None)
        if mine is not None:
            mine.update(stored=True, folder=entry["folder"])
        else:
            rows.append({"name": entry["name"], "method": entry["method"], "status": entry["status"],
                         "best_val_accuracy": entry["best_val_accuracy"], "active": False, "stored": True,
                         "folder": entry["folder"]})
    return pd.DataFrame(rows)


def history_table(bench: Workbench, kind: str | None = None, name: str | None = None, since: str | None = None):
    """Runs of the store, newest first (this kernel's and earlier ones); with the store off, this session's
    prompts."""
    import pandas as pd

    parse_since(since)  # a bad --since is an error whether or not the store is on
    if bench.config.store:
        return pd.DataFrame(bench.recorder.runs(kind, name, since), columns=HISTORY_COLUMNS)
    return pd.DataFrame(bench.runs.history_rows())
