"""The comparison table and its views: one row per condition, the same examples under each.

Every view is plain HTML (pandas tables, inline PNGs), so a saved notebook still shows it; the
magics put the views in tabs when a live front end can show widgets.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import numpy as np

from .diffing import inline_html_diff
from .evaluation import ConditionResult
from .plots import accuracy_bars, accuracy_vs_k, img_tag
from .stats import confusion, mcnemar_p, per_label_scores

_GOOD, _BAD = "background:#e6f4ea", "background:#fce8e6"


def _cell(text: str) -> str:
    return f"<td style='text-align:left;white-space:pre-wrap'>{html.escape(str(text))}</td>"


@dataclass
class CompareResult:
    conditions: list[ConditionResult]
    eval_texts: list[str]
    title: str = "compare"

    def __post_init__(self) -> None:
        if not self.conditions:
            raise ValueError("a comparison needs at least one condition")

    @property
    def best(self) -> ConditionResult:
        return max(self.conditions, key=lambda c: c.accuracy)

    def to_pandas(self):
        import pandas as pd

        best = self.best
        rows = []
        for result in self.conditions:
            low, high = result.interval
            row = {"condition": result.condition, "kind": result.kind, "accuracy": result.accuracy,
                   "accuracy_low": low, "accuracy_high": high, "macro_f1": result.macro_f1,
                   "consistency": result.consistency, "latency_ms": result.latency_ms,
                   "prompt_tokens": result.mean_prompt_tokens, "trainable_params": result.trainable_params,
                   "train_seconds": result.train_seconds,
                   "p_vs_best": None if result is best else mcnemar_p(result.correct, best.correct), "n": result.n}
            if result.order_accuracies:
                row["order_spread"] = float(np.std(result.order_accuracies))
            rows.append(row)
        return pd.DataFrame(rows)

    def examples(self):
        """Per-example predictions of every condition (and whether each is right)."""
        import pandas as pd

        frame = pd.DataFrame({"text": self.eval_texts, "reference": self.conditions[0].references})
        for result in self.conditions:
            frame[result.condition] = result.predictions
            frame[f"{result.condition}_correct"] = result.correct
        return frame

    # -- views ----------------------------------------------------------------------------------
    def summary_html(self) -> str:
        table = self.to_pandas()
        shown = table.copy()
        for column in ("accuracy", "accuracy_low", "accuracy_high", "macro_f1", "consistency", "order_spread"):
            if column in shown:
                shown[column] = shown[column].map(lambda v: "–" if v is None or v != v else f"{v:.3f}")
        shown["latency_ms"] = shown["latency_ms"].map(lambda v: f"{v:.1f}")
        shown["prompt_tokens"] = shown["prompt_tokens"].map(lambda v: f"{v:.0f}")
        shown["train_seconds"] = shown["train_seconds"].map(lambda v: f"{v:.1f}")
        shown["trainable_params"] = shown["trainable_params"].map(lambda v: f"{v:,}")
        shown["p_vs_best"] = shown["p_vs_best"].map(lambda v: "best" if v is None or v != v else f"{v:.3g}")
        chart = accuracy_bars(list(table["condition"]), list(table["accuracy"]), list(table["accuracy_low"]),
                              list(table["accuracy_high"]))
        note = ("<p style='color:gray'>accuracy with a 95% bootstrap interval; p_vs_best: exact McNemar test "
                "against the best condition on the same examples; latency per example.</p>")
        return shown.to_html(index=False, classes="ftpe-compare-table") + note + img_tag(chart, "accuracy chart")

    def disagreements_html(self, limit: int = 50) -> str:
        names = [c.condition for c in self.conditions]
        rows = []
        for index in range(len(self.eval_texts)):
            predictions = [c.predictions[index] for c in self.conditions]
            if len(set(predictions)) <= 1:
                continue
            cells = []
            for result in self.conditions:
                style = _GOOD if result.correct[index] else _BAD
                shown = result.outputs[index] if result.label_set is None else result.predictions[index]
                base = self.conditions[0].outputs[index] if result.label_set is None else None
                body = inline_html_diff(base, shown) if base is not None and result is not self.conditions[0] \
                    else html.escape(str(shown))
                cells.append(f"<td style='{style};text-align:left;white-space:pre-wrap'>{body}</td>")
            rows.append(f"<tr><td>{index}</td>{_cell(self.eval_texts[index])}{_cell(self.conditions[0].references[index])}"
                        + "".join(cells) + "</tr>")
            if len(rows) >= limit:
                break
        if not rows:
            return "<p>All conditions agree on every example.</p>"
        head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
        return (f"<p>{len(rows)} example(s) where conditions disagree (green: right, red: wrong).</p>"
                f"<table class='ftpe-disagreements'><thead><tr><th>#</th><th>text</th><th>reference</th>{head}</tr>"
                "</thead><tbody>" + "".join(rows) + "</tbody></table>")

    def errors_html(self, per_condition: int = 5) -> str:
        parts = []
        for result in self.conditions:
            wrong = [i for i, ok in enumerate(result.correct) if not ok][:per_condition]
            items = "".join(f"<tr><td>{i}</td>{_cell(self.eval_texts[i])}{_cell(result.references[i])}"
                            f"{_cell(result.outputs[i])}</tr>" for i in wrong)
            parts.append(f"<h4>{html.escape(result.condition)}: {result.n - sum(result.correct)} error(s)</h4>"
                         + (f"<table><tr><th>#</th><th>text</th><th>reference</th><th>output</th></tr>{items}</table>"
                            if items else "<p>none</p>"))
        return "".join(parts)

    def prompts_html(self) -> str:
        return "".join(f"<h4>{html.escape(r.condition)} ({html.escape(r.kind)}, "
                       f"{r.prompt_tokens[0] if r.prompt_tokens else 0} tokens)</h4>"
                       f"<pre style='white-space:pre-wrap'>{html.escape(r.example_prompt)}</pre>"
                       for r in self.conditions)

    def sections(self) -> dict[str, str]:
        return {"Summary": self.summary_html(), "Disagreements": self.disagreements_html(),
                "Errors": self.errors_html(), "Prompts": self.prompts_html()}

    def _repr_html_(self) -> str:
        from .widgets import static_sections

        return static_sections(self.sections())

    def __str__(self) -> str:
        columns = ["condition", "accuracy", "accuracy_low", "accuracy_high", "macro_f1", "latency_ms", "prompt_tokens",
                   "p_vs_best", "n"]
        return self.to_pandas()[columns].to_string(index=False, float_format=lambda v: f"{v:.3f}")

    def _repr_pretty_(self, printer, cycle: bool) -> None:
        printer.text(str(self))


def fewshot_html(result: CompareResult, sweep: bool) -> str:
    """The %%fewshot report: prompt, accuracy with CI, per-label scores, confusion, errors, k curve."""
    main = result.conditions[-1] if sweep else result.conditions[0]
    low, high = main.interval
    parts = [f"<p><b>{html.escape(main.condition)}</b>: accuracy <b>{main.accuracy:.3f}</b> "
             f"(95% CI {low:.3f}–{high:.3f}, n={main.n}), {main.latency_ms:.1f} ms per example</p>"]
    if main.order_accuracies:
        parts.append(f"<p>{len(main.order_accuracies)} orders of the same examples: mean "
                     f"{np.mean(main.order_accuracies):.3f} ± {np.std(main.order_accuracies):.3f} "
                     f"(min {min(main.order_accuracies):.3f}, max {max(main.order_accuracies):.3f})</p>")
    overlap = main.extra.get("overlap", 0)
    if overlap:
        parts.append(f"<p style='color:#b00'>Leakage guard: {overlap} eval example(s) also appear in the training "
                     "pool; their duplicates were excluded from the demonstrations (--allow-overlap keeps them).</p>")
    if sweep:
        ks = [c.extra.get("k", 0) for c in result.conditions]
        intervals = [c.interval for c in result.conditions]
        png = accuracy_vs_k(ks, [c.accuracy for c in result.conditions], [i[0] for i in intervals],
                            [i[1] for i in intervals], "data efficiency")
        parts.append(img_tag(png, "accuracy against k"))
    tokens = main.prompt_tokens[0] if main.prompt_tokens else 0
    parts.append(f"<details><summary>Assembled prompt for example 0 ({tokens} tokens)</summary>"
                 f"<pre style='white-space:pre-wrap'>{html.escape(main.example_prompt)}</pre></details>")
    if main.label_set:
        import pandas as pd

        scores = pd.DataFrame(per_label_scores(main.predictions, main.references, main.label_set)).T
        parts.append("<h4>Per label</h4>" + scores.to_html(float_format=lambda v: f"{v:.3f}"))
        parts.append("<h4>Confusion matrix (rows: true)</h4>"
                     + confusion(main.predictions, main.references, main.label_set).to_html())
    parts.append("<h4>Errors</h4>" + CompareResult([main], result.eval_texts).errors_html(per_condition=5))
    return "<div class='ftpe-fewshot'>" + "".join(parts) + "</div>"
