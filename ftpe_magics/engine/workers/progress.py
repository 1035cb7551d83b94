"""Training events across a process boundary: rank 0 appends them to ``progress.jsonl``, the kernel replays them
to its own observers (the live view, the run store's checkpoints), so a run in workers looks like one in the
kernel. A line is written whole and flushed; the reader only takes lines that end in a newline.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..adapters.files import save_adapter
from ..finetune.observers import TrainingObserver, TrainingPlan


class ProgressWriter(TrainingObserver):
    """Rank 0's observer: every event as a JSON line; the best adapter so far and the final one as folders."""

    def __init__(self, path: Path, checkpoint: Path, final: Path) -> None:
        self.path, self.checkpoint, self.final = path, checkpoint, final

    def _write(self, event: str, **fields: Any) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"event": event, **fields}) + "\n")
            handle.flush()

    def start(self, plan: TrainingPlan) -> None:
        self._write("start", total_steps=plan.total_steps, method=plan.method, trainable_params=plan.trainable_params)

    def step(self, step: int, tokens: int) -> None:
        self._write("step", step=step, tokens=tokens)

    def log(self, record: dict[str, Any]) -> None:
        self._write("log", record=record)

    def evaluation(self, record: dict[str, Any]) -> None:
        self._write("evaluation", record=record)

    def improved(self, step: int, metric: float | None, adapter: Callable[[], Any]) -> None:
        save_adapter(adapter(), self.checkpoint)  # before the event: a reader never sees a folder not yet written
        self._write("improved", step=step, metric=metric)

    def end(self, adapter: Any) -> None:
        save_adapter(adapter, self.final)
        self._write("end", steps=adapter.steps, interrupted_at=adapter.interrupted_at,
                    train_seconds=adapter.train_seconds, best_metric=adapter.best_metric)


class ProgressReader:
    """The kernel's side: reads the lines added since the last call and passes them to ``observer``."""

    def __init__(self, path: Path, observer: TrainingObserver, checkpoint: Callable[[], Any]) -> None:
        self.path, self.observer, self.checkpoint = path, observer, checkpoint
        self.offset = 0
        self.ended: dict[str, Any] | None = None  # the "end" event: steps, interrupted_at, train_seconds, best

    def poll(self) -> None:
        if not self.path.is_file():
            return
        with open(self.path, encoding="utf-8") as handle:
            handle.seek(self.offset)
            text = handle.read()
        complete = text[: text.rfind("\n") + 1]
        self.offset += len(complete.encode("utf-8"))
        for line in complete.splitlines():
            self._dispatch(json.loads(line))

    def _dispatch(self, event: dict[str, Any]) -> None:
        kind = event.pop("event")
        if kind == "start":
            self.observer.start(TrainingPlan(**event))
        elif kind == "step":
            self.observer.step(event["step"], event["tokens"])
        elif kind in ("log", "evaluation"):
            getattr(self.observer, kind)(event["record"])
        elif kind == "improved":
            self.observer.improved(event["step"], event["metric"], self.checkpoint)
        elif kind == "end":
            self.ended = event
