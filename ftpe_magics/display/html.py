"""Pure functions from engine objects to HTML strings.

Every view is plain HTML (pandas tables, inline PNGs), so a saved notebook still shows it with no
kernel and no widget state; ``widgets.display_tabs`` puts the same sections in tabs when a live
front end can show widgets. Nothing here computes a figure: it reads the result objects.
"""

from __future__ import annotations

import difflib
import html
import re
from typing import Any

import numpy as np

from ..engine.evaluation.comparison import CompareResult, metric_notices
from ..engine.evaluation.evaluator import ConditionResult
from ..engine.evaluation.stats import confusion, paired_test_name, per_label_scores
from ..engine.prompting.prompt_result import PromptResult
from .plots import accuracy_bars, accuracy_vs_k, img_tag

_GOOD, _BAD = "background:#e6f4ea", "background:#fce8e6"
_CARD = "font-family:var(--jp-content-font-family,sans-serif);font-size:13px"
_PRE = "white-space:pre-wrap;margin:2px 0;padding:6px;background:rgba(127,127,127,0.08);border-radius:4px"
_WORDS = re.compile(r"\s+|[^\s]+")
_DEL_STYLE = "background:#fdd;color:#900;text-decoration:line-through"
_INS_STYLE = "background:#dfd;color:#060"


def _cell(text: str) -> str:
    return f"<td style='text-align:left;white-space:pre-wrap'>{html.escape(str(text))}</td>"


def inline_html_diff(old: str, new: str) -> str:
    """Word-level diff: ``<del>`` for removed words, ``<ins>`` for added ones (what a reader scans for)."""
    old_words, new_words = _WORDS.findall(old), _WORDS.findall(new)
    parts = []
    matcher = difflib.SequenceMatcher(a=old_words, b=new_words, autojunk=False)
    for op, a0, a1, b0, b1 in matcher.get_opcodes():
        if op == "equal":
            parts.append(html.escape("".join(old_words[a0:a1])))
            continue
        if a1 > a0:
            parts.append(f'<del style="{_DEL_STYLE}">{html.escape("".join(old_words[a0:a1]))}</del>')
        if b1 > b0:
            parts.append(f'<ins style="{_INS_STYLE}">{html.escape("".join(new_words[b0:b1]))}</ins>')
    return "".join(parts)


def static_sections(sections: dict[str, str], open_first: bool = True) -> str:
    """All sections stacked as collapsible blocks, the static twin of a Tab widget."""
    blocks = []
    for index, (title, body) in enumerate(sections.items()):
        state = " open" if open_first and index == 0 else ""
        blocks.append(f"<details{state} class='ftpe-section'><summary><b>{html.escape(title)}</b></summary>"
                      f"{body}</details>")
    return "<div class='ftpe-sections'>" + "".join(blocks) + "</div>"


def key_value_html(title: str, rows: list[tuple[str, Any]]) -> str:
    body = "".join(f"<tr><th style='text-align:left'>{html.escape(str(k))}</th>"
                   f"<td style='text-align:left'>{html.escape(str(v))}</td></tr>" for k, v in rows)
    return f"<table><caption style='text-align:left'><b>{html.escape(title)}</b></caption>{body}</table>"


# -- %%prompt ----------------------------------------------------------------------------------------
def _prompt_outputs_html(result: PromptResult) -> str:
    if len(result.prompts) == 1 and result.settings.samples == 1:
        return f'<pre style="{_PRE}">{html.escape(result.outputs[0][0])}</pre>'
    rows = []
    for index, prompt in enumerate(result.prompts):
        if result.settings.samples > 1:
            cell = "<br>".join(f"<b>{count}&times;</b> {html.escape(text)}"
                               for text, count in result.sample_counts(index))
        else:
            cell = html.escape(result.outputs[index][0])
        rows.append(f"<tr><td>{index}</td><td style='text-align:left;white-space:pre-wrap'>{html.escape(prompt)}"
                    f"</td><td style='text-align:left;white-space:pre-wrap'>{cell}</td></tr>")
    return ("<table><thead><tr><th>#</th><th>prompt</th><th>output</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")


def _prompt_diff_html(result: PromptResult) -> str:
    previous = result.previous
    if previous is None:
        return ""
    settings = result.changed_settings()
    items = "".join(f"<li><code>{html.escape(key)}</code>: {html.escape(repr(old))} &rarr; "
                    f"{html.escape(repr(new))}</li>" for key, (old, new) in settings.items() if key != "template")
    template = (f"<div>template:</div><pre style='{_PRE}'>{inline_html_diff(previous.template, result.template)}"
                "</pre>" if "template" in settings else "")
    output = inline_html_diff("\n".join(previous.texts), "\n".join(result.texts))
    return (f"<details open class='ftpe-diff'><summary>Diff against the previous run of "
            f"<b>{html.escape(result.name or '')}</b></summary><ul>{items or '<li>settings unchanged</li>'}</ul>"
            f"{template}<div>output:</div><pre style='{_PRE}'>{output}</pre></details>")


def prompt_result_html(result: PromptResult) -> str:
    status = " &middot; <b style='color:#b00'>interrupted: partial output</b>" if result.interrupted else ""
    settings = result.settings
    mode = "greedy" if settings.greedy else f"T={settings.temperature}, top-p={settings.top_p}, seed={settings.seed}"
    head = (f"<div style='color:gray'>{html.escape(result.name or 'prompt')} &middot; {html.escape(result.model)} "
            f"&middot; {mode} &middot; {len(result.prompts)} prompt(s) &times; {settings.samples} sample(s) "
            f"&middot; {result.seconds:.2f}s{status}</div>")
    body = _prompt_outputs_html(result) + _prompt_diff_html(result)
    return f"<div class='ftpe-result' style='{_CARD}'>{head}{body}</div>"


# -- %%compare ---------------------------------------------------------------------------------------
def _formatted_table(table, best: str, extra_columns: tuple[str, ...] = ()):
    shown = table.copy()
    for column in ("accuracy", "accuracy_low", "accuracy_high", "macro_f1", "consistency", "order_spread",
                   *extra_columns):
        if column in shown:
            shown[column] = shown[column].map(lambda v: "–" if v is None or v != v else f"{v:.3f}")
    shown["latency_ms"] = shown["latency_ms"].map(lambda v: f"{v:.1f}")
    for column, form in (("peak_memory_mb", "{:.0f}"), ("flops_per_query", "{:.2e}"), ("train_flops", "{:.2e}")):
        if column in shown:
            shown[column] = shown[column].map(lambda v, form=form: "–" if v is None or v != v else form.format(v))
    for column in ("prompt_tokens", "tokens_generated"):
        if column in shown:
            shown[column] = shown[column].map(lambda v: "–" if v is None or v != v else f"{v:.0f}")
    shown["train_seconds"] = shown["train_seconds"].map(lambda v: f"{v:.1f}")
    shown["trainable_params"] = shown["trainable_params"].map(lambda v: f"{v:,}")
    shown["p_vs_best"] = shown["p_vs_best"].map(lambda v: "–" if v is None or v != v else f"{v:.3g}")
    shown.loc[shown["condition"] == best, "p_vs_best"] = "best"
    shown["interrupted"] = shown["interrupted"].map(lambda v: "interrupted" if v else "")
    return shown


def _fitted_table(table, best: str, metric_columns: tuple[str, ...] = ()):
    """The columns that fit an output area: the interval beside the accuracy, a metric's own columns (the share
    of valid JSON...), consistency and interruption only when there is something to show; every other column
    (FLOPs, memory, order spread...) is in .to_pandas()."""
    shown = _formatted_table(table, best, metric_columns)
    shown["accuracy"] = shown["accuracy"] + " (" + shown["accuracy_low"] + "–" + shown["accuracy_high"] + ")"
    columns = ["condition", "kind", "accuracy", "macro_f1", *metric_columns, "p_vs_best", "latency_ms",
               "prompt_tokens", "train_seconds", "n"]
    if table["tokens_generated"].notna().any():  # a generation task: what each answer cost to write
        columns.insert(columns.index("prompt_tokens") + 1, "tokens_generated")
    if table["consistency"].notna().any():
        columns.insert(4, "consistency")
    if table["interrupted"].any():
        columns.append("interrupted")
    return shown[columns].rename(columns={"accuracy": "accuracy (95% CI)"})


def summary_html(result: CompareResult) -> str:
    table = result.to_pandas()
    scored = table[~table["interrupted"]]
    chart = accuracy_bars(list(scored["condition"]), list(scored["accuracy"]), list(scored["accuracy_low"]),
                          list(scored["accuracy_high"]))
    test = paired_test_name(*(c.scores for c in result.conditions))
    note = ("<p style='color:gray'>accuracy with its exact 95% interval (bootstrap for mean scores); p_vs_best: "
            f"{test} against the best condition on the same examples; latency per example; every column "
            "(FLOPs, memory, trainable parameters...) in result.to_pandas().</p>")
    by_construction = [c.condition for c in result.conditions if c.deterministic]
    if by_construction:
        note += (f"<p style='color:gray'>consistency of {html.escape(', '.join(by_construction))}: 1.0 by "
                 "construction (a classification head predicts by argmax; --samples draws from its distribution)."
                 "</p>")
    for line in (line for c in result.conditions for line in metric_notices(c)):  # invalid JSON, a judge's trust
        note += f"<p style='color:#8a5a00'>{html.escape(line)}</p>"
    stopped = list(table.loc[table["interrupted"], "condition"])
    if stopped:
        note += (f"<p style='color:#b00'><b>Interrupted:</b> {html.escape(', '.join(stopped))} (stopped before the "
                 "end; partial outputs kept in the Errors tab and in .examples(), not scored).</p>")
    fitted = _fitted_table(table, result.best.condition, tuple(result.metric_columns()))
    return (fitted.to_html(index=False, classes="ftpe-compare-table") + note + img_tag(chart, "accuracy chart")
            + verdict_html(result))


def verdict_html(result: CompareResult) -> str:
    """The verdict panel under the table, when the comparison has both a prompt and a fine-tune."""
    written = result.verdict()
    if not written.numbers:
        return ""
    items = "".join(f"<li>{html.escape(sentence)}</li>" for sentence in written.sentences)
    return (f"<div class='ftpe-verdict' style='border-left:4px solid #3b6;padding:4px 12px;margin-top:8px'>"
            f"<h4>Verdict</h4><ul>{items}</ul></div>")


def _disagreement_row(result: CompareResult, index: int) -> str:
    first = result.conditions[0]
    cells = []
    for condition in result.conditions:
        style = _GOOD if condition.correct[index] else _BAD
        shown = condition.outputs[index] if condition.label_set is None else condition.predictions[index]
        base = first.outputs[index] if condition.label_set is None else None
        body = inline_html_diff(base, shown) if base is not None and condition is not first \
            else html.escape(str(shown))
        cells.append(f"<td style='{style};text-align:left;white-space:pre-wrap'>{body}</td>")
    return (f"<tr><td>{index}</td>{_cell(result.eval_texts[index])}{_cell(first.references[index])}"
            + "".join(cells) + "</tr>")


def disagreements_html(result: CompareResult, limit: int = 50) -> str:
    rows = [_disagreement_row(result, index) for index in result.disagreements()[:limit]]
    if not rows:
        return "<p>All conditions agree on every example.</p>"
    head = "".join(f"<th>{html.escape(c.condition)}</th>" for c in result.conditions)
    return (f"<p>{len(rows)} example(s) where conditions disagree (green: right, red: wrong).</p>"
            f"<table class='ftpe-disagreements'><thead><tr><th>#</th><th>text</th><th>reference</th>{head}</tr>"
            "</thead><tbody>" + "".join(rows) + "</tbody></table>")


def errors_html(conditions: list[ConditionResult], eval_texts: list[str], per_condition: int = 5) -> str:
    parts = []
    for condition in conditions:
        wrong = [i for i, ok in enumerate(condition.correct) if not ok][:per_condition]
        items = "".join(f"<tr><td>{i}</td>{_cell(eval_texts[i])}{_cell(condition.references[i])}"
                        f"{_cell(condition.outputs[i])}</tr>" for i in wrong)
        parts.append(f"<h4>{html.escape(condition.condition)}: {condition.n - sum(condition.correct)} error(s)</h4>"
                     + (f"<table><tr><th>#</th><th>text</th><th>reference</th><th>output</th></tr>{items}</table>"
                        if items else "<p>none</p>"))
    return "".join(parts)


def prompts_html(result: CompareResult) -> str:
    return "".join(f"<h4>{html.escape(r.condition)} ({html.escape(r.kind)}, "
                   f"{r.prompt_tokens[0] if r.prompt_tokens else 0} tokens)</h4>"
                   f"<pre style='white-space:pre-wrap'>{html.escape(r.example_prompt)}</pre>"
                   for r in result.conditions)


def compare_sections(result: CompareResult) -> dict[str, str]:
    """The views of a comparison, as the tabs (and their static twin) show them; a learning curve first."""
    sections = {}
    if result.curve is not None and len(result.curve.measured_sizes()) + result.curve.repeats > 2:
        from .curves import learning_curve_html

        sections["Learning curve"] = learning_curve_html(result.curve)
    return {**sections, "Summary": summary_html(result), "Disagreements": disagreements_html(result),
            "Errors": errors_html(result.conditions, result.eval_texts), "Prompts": prompts_html(result)}


def compare_html(result: CompareResult) -> str:
    return static_sections(compare_sections(result))


# -- %%fewshot ---------------------------------------------------------------------------------------
def _fewshot_head(main: ConditionResult) -> list[str]:
    low, high = main.interval
    if main.interrupted:
        return [f"<p><b>{html.escape(main.condition)}</b>: <b style='color:#b00'>interrupted</b> before every example "
                "was scored; partial outputs are kept (.examples()), accuracy is not computed.</p>"]
    parts = [f"<p><b>{html.escape(main.condition)}</b>: accuracy <b>{main.accuracy:.3f}</b> "
             f"(95% CI {low:.3f}–{high:.3f}, n={main.n}), {main.latency_ms:.1f} ms per example</p>"]
    if main.order_accuracies:
        parts.append(f"<p>{len(main.order_accuracies)} orders of the same examples: mean "
                     f"{np.mean(main.order_accuracies):.3f} ± {np.std(main.order_accuracies):.3f} "
                     f"(min {min(main.order_accuracies):.3f}, max {max(main.order_accuracies):.3f})</p>")
    pool_seconds = main.extra.get("pool_embedding_seconds", 0.0)
    if pool_seconds:
        parts.append(f"<p style='color:gray'>similar: the training pool was embedded once ({pool_seconds:.1f} s, "
                     "kept for every later configuration and k with this model); the latency above is per query."
                     "</p>")
    if main.leakage_notice:
        parts.append(f"<p style='color:#b00'>{html.escape(main.leakage_notice)}</p>")
    return parts


def _k_curve(result: CompareResult) -> str:
    ks = [c.extra.get("k", 0) for c in result.conditions]
    intervals = [c.interval for c in result.conditions]
    png = accuracy_vs_k(ks, [c.accuracy for c in result.conditions], [i[0] for i in intervals],
                        [i[1] for i in intervals], "data efficiency")
    return img_tag(png, "accuracy against k")


def fewshot_html(result: CompareResult, sweep: bool) -> str:
    """The %%fewshot report: prompt, accuracy with CI, per-label scores, confusion, errors, k curve."""
    main = result.conditions[-1] if sweep else result.conditions[0]
    parts = _fewshot_head(main)
    if sweep:
        parts.append(_k_curve(result))
    tokens = main.prompt_tokens[0] if main.prompt_tokens else 0
    parts.append(f"<details><summary>Assembled prompt for example 0 ({tokens} tokens)</summary>"
                 f"<pre style='white-space:pre-wrap'>{html.escape(main.example_prompt)}</pre></details>")
    if main.label_set:
        import pandas as pd

        scores = pd.DataFrame(per_label_scores(main.predictions, main.references, main.label_set)).T
        parts.append("<h4>Per label</h4>" + scores.to_html(float_format=lambda v: f"{v:.3f}"))
        parts.append("<h4>Confusion matrix (rows: true)</h4>"
                     + confusion(main.predictions, main.references, main.label_set).to_html())
    parts.append("<h4>Errors</h4>" + errors_html([main], result.eval_texts, per_condition=5))
    if result.search_log:
        parts.append(search_log_html(result.search_log))
    return "<div class='ftpe-fewshot'>" + "".join(parts) + "</div>"


def search_log_html(log: list[dict]) -> str:
    """Every candidate of a %%fewshot --search and its validation accuracy; the kept one in bold."""
    import pandas as pd

    frame = pd.DataFrame(log).sort_values("val_accuracy", ascending=False, kind="stable")
    table = frame.to_html(index=False, float_format=lambda v: f"{v:.3f}", escape=True)
    return (f"<h4>Search log ({len(log)} candidates on the validation split; only the best was scored on the eval "
            f"set)</h4>{table}")
