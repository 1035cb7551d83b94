"""Static matplotlib figures as inline PNG data URIs: they survive a saved notebook with no kernel."""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402


def png_bytes(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def img_tag(png: bytes, alt: str) -> str:
    return f'<img alt="{alt}" src="data:image/png;base64,{base64.b64encode(png).decode()}"/>'


def accuracy_bars(names: list[str], accuracy: list[float], low: list[float], high: list[float]) -> bytes:
    fig, ax = plt.subplots(figsize=(max(4, 1.1 * len(names) + 1), 3))
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
    fig, ax = plt.subplots(figsize=(4.5, 3))
    ax.plot(ks, accuracy, marker="o")
    ax.fill_between(ks, low, high, alpha=0.2)
    ax.set_xlabel("k (examples in the prompt)")
    ax.set_ylabel("accuracy (95% CI)")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return png_bytes(fig)
