"""Adapters on disk beside the run store, written while they train.

Each ``%%finetune`` with a store on writes its adapter to ``adapters/<base fingerprint>/<name>``
next to the store file: the best state so far at every validation that improves it, and the
final adapter at the end, each time atomically (``save_adapter`` writes a temporary folder and
renames it into place). The store's ``adapters`` row says how far it got, so a kernel that dies
leaves the best adapter so far and a status that a new kernel reads as "kernel died after step k".
"""

from __future__ import annotations

import re
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..adapters.files import save_adapter
from ..adapters.registry import Adapter
from ..finetune.observers import TrainingObserver, TrainingPlan
from .store import RunStore


def adapter_folder(fingerprint: str, name: str) -> str:
    """Where adapter ``name`` of the base ``fingerprint`` lives, relative to the store's folder."""
    return f"adapters/{fingerprint}/{re.sub(r'[^A-Za-z0-9_.-]', '_', name).lstrip('.') or '_'}"


def remove_folder(store: RunStore, relative: str) -> bool:
    folder = store.folder / relative
    if not folder.is_dir():
        return False
    shutil.rmtree(folder)
    return True


class AdapterCheckpoints(TrainingObserver):
    """Keeps the adapter being trained on disk, and its row in the store up to date."""

    def __init__(self, store: RunStore, name: str, method: str, base_model_id: str, base_fingerprint: str,
                 say: Callable[[str], None]) -> None:
        self.store, self.name, self.method, self.say = store, name, method, say
        self.base_model_id, self.base_fingerprint = base_model_id, base_fingerprint
        self.relative = adapter_folder(base_fingerprint, name)
        self.folder: Path = store.folder / self.relative
        self.step_reached = 0
        self.best: float | None = None
        self._failed = False
        self.started = False

    def _row(self, status: str, step: int) -> None:
        try:
            self.store.put_adapter(self.base_fingerprint, self.name, self.relative, method=self.method,
                                   status=status, step=step, best_metric=self.best)
        except sqlite3.Error as error:
            self._said(f"Could not update adapter {self.name!r} in the run store ({error}).")

    def _said(self, message: str) -> None:
        if not self._failed:
            self.say(message)
        self._failed = True

    def _save(self, adapter: Adapter) -> bool:
        """Write one state; a failure to write is said once and training goes on (the adapter stays in memory)."""
        adapter.base_model_id, adapter.base_fingerprint = self.base_model_id, self.base_fingerprint
        try:
            save_adapter(adapter, self.folder, store_owned=True)
            return True
        except Exception as error:  # noqa: BLE001 - a full disk must not end a training run
            self._said(f"Could not write adapter {self.name!r} to the store ({error}); it is kept in memory.")
            return False

    def start(self, plan: TrainingPlan) -> None:
        self.started = True
        self._row("running", 0)

    def evaluation(self, record: dict[str, Any]) -> None:
        self.step_reached = record.get("step", self.step_reached)

    def improved(self, step: int, metric: float | None, adapter: Callable[[], Any]) -> None:
        self.best = metric
        if self._save(adapter()):
            self._row("running", step)

    def end(self, adapter: Any) -> None:
        self.best = adapter.best_metric if adapter.best_metric is not None else self.best
        if self._save(adapter):
            stopped = adapter.interrupted_at is not None
            self._row("stopped" if stopped else "finished", adapter.interrupted_at if stopped else adapter.steps)

    def failed(self) -> None:
        """Training raised: what was written so far stays, marked as such (nothing, if it never started)."""
        if self.started:
            self._row("failed", self.step_reached)
