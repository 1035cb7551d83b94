"""The live view of a fine-tuning run, updated in place in one output.

Like transformers' notebook progress tracker, it knows nothing of ``Trainer``: it is a training
observer (``engine.finetune.observers``) that re-renders one display (``display_id``) with static
HTML and an inline PNG, so whatever it showed last (the final curves and a summary row) stays in a
saved notebook with no kernel and no widget state. The records it draws are its own copy; the
adapter's history is kept by the engine.
"""

from __future__ import annotations

import html
import time
from typing import Any

import torch

from ..engine.finetune.observers import TrainingObserver, TrainingPlan
from ..engine.model.memory import human_bytes
from .plots import img_tag, new_figure, png_bytes


class TrainingView(TrainingObserver):
    def __init__(self, references: dict[str, float] | None = None, live: bool = True,
                 refresh_seconds: float = 1.0) -> None:
        self.references = dict(references or {})
        self.live = live
        self.refresh_seconds = refresh_seconds
        self.records: list[dict] = []
        self.total_steps = 0
        self.current_step = 0
        self.tokens = 0
        self.started = 0.0
        self.title = ""
        self._handle = None
        self._last_refresh = 0.0

    # -- observer hooks -------------------------------------------------------------------------------
    def start(self, plan: TrainingPlan) -> None:
        self.records, self.current_step, self.tokens = [], 0, 0  # a search starts one run per trial: each its own
        self.total_steps = plan.total_steps
        self.title = f"{plan.method}: {plan.trainable_params:,} trainable parameters"
        self.started = time.perf_counter()
        if self.live:
            from IPython.display import HTML, display

            self._handle = display(HTML(self.progress_html()), display_id=True)

    def step(self, step: int, tokens: int) -> None:
        self.current_step, self.tokens = step, tokens
        self.refresh()

    def log(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        self.refresh()

    def evaluation(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        self.refresh(force=True)

    def end(self, adapter: Any) -> None:
        """The final static output: curves as PNG and a summary row."""
        if self.live and self._handle is not None:
            from IPython.display import HTML

            self._handle.update(HTML(self.final_html(adapter)))

    # -- rendering --------------------------------------------------------------------------------------
    def series(self, key: str) -> tuple[list[int], list[float]]:
        points = [(r["step"], r[key]) for r in self.records if key in r]
        return [p[0] for p in points], [p[1] for p in points]

    def progress_html(self) -> str:
        elapsed = time.perf_counter() - self.started if self.started else 0.0
        step = self.current_step
        eta = elapsed / step * (self.total_steps - step) if step else float("nan")
        parts = [f"step {step}/{self.total_steps}", f"elapsed {elapsed:.0f}s",
                 f"ETA {eta:.0f}s" if eta == eta else "ETA –",
                 f"{self.tokens / elapsed:.0f} tokens/s" if elapsed else ""]
        if torch.cuda.is_available():
            parts.append(f"GPU memory {human_bytes(torch.cuda.max_memory_allocated())}")
        share = 100 * step / max(1, self.total_steps)
        bar = (f"<div style='width:300px;height:8px;background:#ddd;border-radius:4px'><div style='width:{share:.0f}%;"
               "height:8px;background:#4c72b0;border-radius:4px'></div></div>")
        line = " · ".join(part for part in parts if part)
        return f"<div class='ftpe-training'><b>{html.escape(self.title)}</b> {bar}{line}</div>"

    def _draw_accuracy(self, axis) -> None:
        steps, values = self.series("eval_accuracy")
        if steps:
            axis.plot(steps, values, marker="o", label="validation accuracy")
        for index, (name, value) in enumerate(sorted(self.references.items(), key=lambda kv: -kv[1])[:3]):
            axis.axhline(value, linestyle="--", color=f"C{index + 1}", label=f"{name} (prompting)")
        axis.set_ylim(0, 1)
        axis.set_title("validation accuracy")

    def curves_png(self) -> bytes:
        fig, (loss_ax, acc_ax, lr_ax) = new_figure(3, figsize=(11, 2.8))
        for key, label in (("loss", "train loss"), ("eval_loss", "validation loss")):
            steps, values = self.series(key)
            if steps:
                loss_ax.plot(steps, values, marker="." if key == "eval_loss" else None, label=label)
        loss_ax.set_title("loss")
        self._draw_accuracy(acc_ax)
        steps, values = self.series("learning_rate")
        if steps:
            lr_ax.plot(steps, values)
        lr_ax.set_title("learning rate")
        for axis in (loss_ax, acc_ax, lr_ax):
            if axis.get_legend_handles_labels()[0]:
                axis.legend(fontsize=7)
            axis.set_xlabel("step")
            axis.grid(alpha=0.3)
        return png_bytes(fig)

    def final_html(self, adapter: Any) -> str:
        summary = adapter.summary()
        row = "".join(f"<td>{html.escape(str(value))}</td>" for value in summary.values())
        head = "".join(f"<th>{html.escape(key)}</th>" for key in summary)
        return (self.progress_html() + img_tag(self.curves_png(), "training curves")
                + f"<table class='ftpe-finetune-summary'><tr>{head}</tr><tr>{row}</tr></table>")

    def refresh(self, force: bool = False) -> None:
        if not self.live or self._handle is None:
            return
        now = time.perf_counter()
        if not force and now - self._last_refresh < self.refresh_seconds:
            return
        self._last_refresh = now
        from IPython.display import HTML

        self._handle.update(HTML(self.progress_html() + img_tag(self.curves_png(), "training curves")))
