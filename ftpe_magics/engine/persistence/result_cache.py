"""Answering a condition from the run store when the same work was done before.

A condition's cache key is a digest of everything its numbers depend on: the weights (fingerprint
of the base, and of the adapter it runs on), the library versions, device and dtype, the eval data,
the scoring settings (norm, samples, seed, metric and its code, batch size, token limits), the
condition itself (template, few-shot configuration with a fingerprint of its training pool) and
the values of any notebook variable its template fills. Greedy scoring and seeded sampling are
deterministic, so a hit equals a fresh run; an interrupted condition is never a hit.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from ..evaluation.evaluator import ConditionResult
from ..evaluation.identity import digest
from .records import condition_data, condition_from_data, summary_line
from .store import RunStore


@dataclass
class _Entry:
    result: ConditionResult
    key: str | None
    run_id: int | None  # set when the result came from the store, or once it is recorded
    hit: bool = False  # read from the store, not computed


class ConditionCache:
    """Runs conditions through the store: a hit is answered at once (and said in one line); what ran is kept
    for :meth:`record`. With no store, or ``use=False`` (``--no-cache``), every condition runs."""

    def __init__(self, store: RunStore | None, base: dict, log: Callable[[str], None], use: bool = True) -> None:
        self.store, self.base, self.log, self.use = store, base, log, use
        self.entries: list[_Entry] = []
        self.quiet = False  # hits are not said one by one (a learning curve says how many at the end)
        # set by a learning curve: each condition is recorded as it finishes, so a dead kernel loses none of them
        self.record_now: dict | None = None

    def key(self, identity: dict | None) -> str | None:
        if self.store is None or identity is None:
            return None
        return digest({**self.base, "condition": identity})

    def run(self, label: str, identity: dict | None, compute: Callable[[], ConditionResult]) -> ConditionResult:
        key = self.key(identity)
        row = self.store.cached(key) if key and self.use else None
        if row is not None:
            result = condition_from_data(row["result"])
            result.condition = label
            when = datetime.fromisoformat(row["created"]).strftime("%Y-%m-%d %H:%M")
            if not self.quiet:
                self.log(f"{label}: cached from run {row['id']}, {when} (--no-cache runs it again).")
            self.entries.append(_Entry(result, key, row["id"], hit=True))
            return result
        result = compute()
        self.entries.append(_Entry(result, None if result.interrupted else key, None))
        if self.record_now is not None and self.store is not None:
            try:
                self._add(self.entries[-1], self.record_now)
            except (sqlite3.Error, OSError):
                pass  # recorded with the rest at the end (where a failure to write is said), or not at all
        return result

    @property
    def from_store(self) -> int:
        return sum(entry.hit for entry in self.entries)

    def run_ids(self) -> dict[int, int]:
        """Each result object's run in the store (after :meth:`record`), by ``id()``: one result object that
        stands at several places of a comparison (a flat condition of a learning curve) is one run."""
        return {id(entry.result): entry.run_id for entry in self.entries}

    def record(self, record: dict) -> list[int]:
        """Record every condition that ran (each its own run, under its key); returns the ids of all, in order."""
        for entry in self.entries:
            if entry.run_id is None:
                self._add(entry, record)
        return [entry.run_id for entry in self.entries]

    def _add(self, entry: _Entry, record: dict) -> None:
        result = entry.result
        entry.run_id = self.store.add_run(
            "condition", {**record, "condition": result.condition, "kind": result.kind, "spec": result.spec},
            condition_data(result), name=result.condition, status="interrupted" if result.interrupted else "finished",
            seconds=result.seconds, summary=summary_line(result), cache_key=entry.key)
