"""The live view of a fine-tuning run, updated in place in one output.

Like transformers' notebook progress callback, it re-renders one display (``display_id``) with
static HTML and an inline PNG, so whatever it showed last (the final curves and a summary row)
stays in a saved notebook with no kernel and no widget state. Its data, ``records``, holds every
logged step, which is what the tests check rather than pixels.
"""

from __future__ import annotations

import html
import time

import torch
from transformers import TrainerCallback

from .memory import human_bytes
from .plots import img_tag, new_figure, png_bytes


class TrainingView:
    def __init__(self, references: dict[str, float] | None = None, live: bool = True,
                 refresh_seconds: float = 1.0) -> None:
        self.references = dict(references or {})
        self.live = live
        self.refresh_seconds = refresh_seconds
        self.records: list[dict] = []
        self.total_steps = 0
        self.step = 0
        self.started = 0.0
        self.collator = None
        self.title = ""
        self._handle = None
        self._last_refresh = 0.0

    # -- data ---------------------------------------------------------------------------------------
    def start(self, total_steps: int, collator=None, method: str = "", trainable: int = 0) -> None:
        self.total_steps, self.collator = total_steps, collator
        self.title = f"{method}: {trainable:,} trainable parameters"
        self.started = time.perf_counter()
        if self.live:
            from IPython.display import HTML, display

            self._handle = display(HTML(self.progress_html()), display_id=True)

    def record(self, entry: dict) -> None:
        self.records.append({key: value for key, value in entry.items() if value is not None})
        self.refresh(force="eval_loss" in entry or "eval_accuracy" in entry)

    def callback(self) -> TrainerCallback:
        view = self

        class _Progress(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                view.step = state.global_step
                view.refresh()

        return _Progress()

    def series(self, key: str) -> tuple[list[int], list[float]]:
        points = [(r["step"], r[key]) for r in self.records if key in r]
        return [p[0] for p in points], [p[1] for p in points]

    # -- rendering ------------------------------------------------------------------------------------
    def progress_html(self) -> str:
        elapsed = time.perf_counter() - self.started if self.started else 0.0
        eta = elapsed / self.step * (self.total_steps - self.step) if self.step else float("nan")
        tokens = self.collator.tokens if self.collator else 0
        parts = [f"step {self.step}/{self.total_steps}", f"elapsed {elapsed:.0f}s",
                 f"ETA {eta:.0f}s" if eta == eta else "ETA –", f"{tokens / elapsed:.0f} tokens/s" if elapsed else ""]
        if torch.cuda.is_available():
            parts.append(f"GPU memory {human_bytes(torch.cuda.max_memory_allocated())}")
        share = 100 * self.step / max(1, self.total_steps)
        bar = (f"<div style='width:300px;height:8px;background:#ddd;border-radius:4px'><div style='width:{share:.0f}%;"
               "height:8px;background:#4c72b0;border-radius:4px'></div></div>")
        line = " · ".join(part for part in parts if part)
        return f"<div class='ftpe-training'><b>{html.escape(self.title)}</b> {bar}{line}</div>"

    def curves_png(self) -> bytes:
        fig, (loss_ax, acc_ax, lr_ax) = new_figure(3, figsize=(11, 2.8))
        for key, label in (("loss", "train loss"), ("eval_loss", "validation loss")):
            steps, values = self.series(key)
            if steps:
                loss_ax.plot(steps, values, marker="." if key == "eval_loss" else None, label=label)
        loss_ax.set_title("loss")
        steps, values = self.series("eval_accuracy")
        if steps:
            acc_ax.plot(steps, values, marker="o", label="validation accuracy")
        for index, (name, value) in enumerate(sorted(self.references.items(), key=lambda kv: -kv[1])[:3]):
            acc_ax.axhline(value, linestyle="--", color=f"C{index + 1}", label=f"{name} (prompting)")
        acc_ax.set_ylim(0, 1)
        acc_ax.set_title("validation accuracy")
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

    def refresh(self, force: bool = False) -> None:
        if not self.live or self._handle is None:
            return
        now = time.perf_counter()
        if not force and now - self._last_refresh < self.refresh_seconds:
            return
        self._last_refresh = now
        from IPython.display import HTML

        self._handle.update(HTML(self.progress_html() + img_tag(self.curves_png(), "training curves")))

    def finish(self, adapter) -> str:
        """The final static output: curves as PNG and a summary row."""
        summary = adapter.summary()
        row = "".join(f"<td>{html.escape(str(value))}</td>" for value in summary.values())
        head = "".join(f"<th>{html.escape(key)}</th>" for key in summary)
        final = (self.progress_html() + img_tag(self.curves_png(), "training curves")
                 + f"<table class='ftpe-finetune-summary'><tr>{head}</tr><tr>{row}</tr></table>")
        if self.live and self._handle is not None:
            from IPython.display import HTML

            self._handle.update(HTML(final))
        return final
