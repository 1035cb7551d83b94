"""HTML for what a search or a learning curve produces: the per-size table and plot with the crossover, and
the trials of a fine-tune search. Pure functions of the engine's result objects, like :mod:`.html`."""

from __future__ import annotations

import html

from ..engine.evaluation.learning_curve import LearningCurve
from .plots import img_tag, learning_curve_plot, trials_plot

_NOTE = "color:gray"


def learning_curve_html(curve: LearningCurve) -> str:
    """The plot, the crossover sentence and the table per size (accuracy pooled over the repeats)."""
    table = curve.to_pandas()
    if table.empty:
        return "<p>The learning curve stopped before its first size was measured.</p>"
    plot = img_tag(learning_curve_plot(table, "accuracy against labelled examples"), "learning curve")
    crossover = html.escape(curve.crossover().sentence)
    shown = table.drop(columns=["repeats"] if curve.repeats == 1 else [])
    if curve.repeats == 1:
        shown = shown.drop(columns=["spread"])
    note = (f"<p style='{_NOTE}'>n: labelled examples (the first n of one seeded shuffle of --train: nested). Few-shot "
            "conditions draw their demonstrations from them, fine-tunes train on them; the others do not use them "
            "and stay flat. Accuracy with its exact 95% interval"
            + (f", pooled over {curve.repeats} draws per size; spread: the standard deviation of the draws' "
               "accuracies" if curve.repeats > 1 else "") + ".</p>")
    if curve.removed:
        note += (f"<p style='{_NOTE}'>Leakage guard: {curve.removed} training example(s) whose text is also in the "
                 "eval set were removed before drawing.</p>")
    return (f"{plot}<p><b>{crossover}</b></p>"
            + shown.to_html(index=False, float_format=lambda v: f"{v:.3f}", classes="ftpe-curve-table") + note)


def search_trials_html(trials: list[dict]) -> str:
    """Every trial of a %%finetune --search: its settings, validation accuracy and state; the kept one first
    in the table's order of accuracy, with the plot of validation accuracy per trial."""
    import pandas as pd

    frame = pd.DataFrame([{k: v for k, v in row.items() if k != "evaluations"} for row in trials])
    frame = frame.sort_values("val_accuracy", ascending=False, kind="stable", na_position="last")
    table = frame.to_html(index=False, float_format=lambda v: f"{v:.4g}", escape=True)
    pruned = sum(row["state"] == "pruned" for row in trials)
    return (f"<h4>Search: {len(trials)} trial(s) on the validation split, {pruned} pruned; the best is kept</h4>"
            + table + img_tag(trials_plot(trials), "validation accuracy per trial"))
