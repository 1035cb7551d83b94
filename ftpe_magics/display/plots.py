"""Static matplotlib figures as inline PNG data URIs: they survive a saved notebook with no kernel.

Figures are built with matplotlib's object API (``Figure``), not pyplot, so drawing here never
touches the user's backend or their current figure.
"""

from __future__ import annotations

import base64
import io

from matplotlib.figure import Figure


def new_figure(columns: int = 1, figsize: tuple[float, float] = (4.5, 3)):
    fig = Figure(figsize=figsize)
    axes = fig.subplots(1, columns)
    return fig, axes


def png_bytes(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def img_tag(png: bytes, alt: str) -> str:
    return f'<img alt="{alt}" src="data:image/png;base64,{base64.b64encode(png).decode()}"/>'


def accuracy_bars(names: list[str], accuracy: list[float], low: list[float], high: list[float]) -> bytes:
    fig, ax = new_figure(figsize=(max(4, 1.1 * len(names) + 1), 3))
    below = [a - lo for a, lo in zip(accuracy, low, strict=True)]
    above = [hi - a for a, hi in zip(accuracy, high, strict=True)]
    errors = [below, above]
    ax.bar(names, accuracy, yerr=errors, capsize=4, color="#4c72b0")
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy (95% CI)")
    ax.tick_params(axis="x", rotation=20)
    ax.grid(axis="y", alpha=0.3)
    return png_bytes(fig)


def accuracy_vs_k(ks: list[int], accuracy: list[float], low: list[float], high: list[float], title: str) -> bytes:
    fig, ax = new_figure()
    ax.plot(ks, accuracy, marker="o")
    ax.fill_between(ks, low, high, alpha=0.2)
    ax.set_xlabel("k (examples in the prompt)")
    ax.set_ylabel("accuracy (95% CI)")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return png_bytes(fig)


def learning_curve_plot(table, title: str) -> bytes:
    """Accuracy with its 95% interval against the number of labelled examples, one line per condition (log x)."""
    fig, ax = new_figure(figsize=(5.5, 3.5))
    for condition, rows in table.groupby("condition", sort=False):
        ax.errorbar(rows["n"], rows["accuracy"], yerr=[rows["accuracy"] - rows["accuracy_low"],
                                                       rows["accuracy_high"] - rows["accuracy"]],
                    marker="o", capsize=3, label=condition)
    ax.set_xscale("log")
    ax.set_xticks(sorted(table["n"].unique()), [str(n) for n in sorted(table["n"].unique())])
    ax.set_xlabel("labelled examples (n)")
    ax.set_ylabel("accuracy (95% CI)")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return png_bytes(fig)


def trials_plot(trials: list[dict]) -> bytes:
    """Validation accuracy at each evaluation of every trial of a search; pruned and stopped trials dashed."""
    fig, ax = new_figure(figsize=(5.5, 3.2))
    for trial in trials:
        points = trial.get("evaluations") or []
        if not points:
            continue
        steps, scores = zip(*points, strict=True)
        style = "-" if trial["state"] == "complete" else "--"
        width = 2.5 if trial.get("best") else 1
        ax.plot(steps, scores, style, marker="o", markersize=3, linewidth=width, label=f"trial {trial['trial']}")
    ax.set_xlabel("training step")
    ax.set_ylabel("validation accuracy")
    ax.set_title("search trials (dashed: pruned or stopped; bold: kept)")
    ax.grid(alpha=0.3)
    if len(trials) <= 12:
        ax.legend(fontsize=7)
    return png_bytes(fig)
