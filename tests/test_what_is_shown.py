"""What a notebook or a terminal shows: whole tables, every notice in the text view too, a compare table that
fits, and a probe reported as what it is."""

from __future__ import annotations

from fewshot_data import EVAL, POOL, TEMPLATE

from ftpe_magics.display.html import compare_html


def test_the_leakage_notice_is_in_the_text_view_too(tiny_session):
    leaked = POOL + [dict(row) for row in EVAL[:3]]  # three eval texts planted in the pool
    result = tiny_session.fewshot(TEMPLATE, leaked, EVAL, k=2, no_cache=True)
    assert result.conditions[0].extra["overlap"] > 0
    assert "Leakage guard" in str(result) and "--allow-overlap keeps them" in str(result)


def test_history_and_adapters_print_whole_in_a_terminal(shell, capsys, tmp_path):
    shell.run_line_magic("config", f"Ftpe.store = {str(tmp_path / 'runs.sqlite')!r}")
    shell.run_cell_magic("prompt", "--max-new-tokens 1 --name first", "hi")
    shell.user_ns["rows"] = POOL[:8]
    shell.run_cell_magic("finetune", "--train rows --name tiny-probe --method probe", TEMPLATE)
    capsys.readouterr()
    shell.run_line_magic("ftpe", "history")
    history = capsys.readouterr().out
    assert "status" in history and "summary" in history and "first" in history and "..." not in history
    shell.run_line_magic("ftpe", "adapters")
    adapters = capsys.readouterr().out
    assert "tiny-probe" in adapters and "status" in adapters and "..." not in adapters


def test_a_probe_is_reported_in_one_line_without_the_step_view(shell, capsys):
    shell.user_ns["rows"] = POOL[:8]
    shell.run_cell_magic("finetune", "--train rows --eval rows --name p --method probe", TEMPLATE)
    out = capsys.readouterr().out
    assert "logistic regression on frozen features" in out and "validation accuracy" in out
    assert "step 0/" not in out and "ftpe-training" not in out


def test_the_compare_table_fits_and_to_pandas_keeps_every_column(tiny_session):
    result = tiny_session.compare("zero: prompt Review: {text}\\nSentiment:", EVAL, no_cache=True)
    table = compare_html(result).split("ftpe-compare-table", 1)[1].split("</table>", 1)[0]
    assert "accuracy (95% CI)" in table and "flops_per_query" not in table and "peak_memory_mb" not in table
    assert {"flops_per_query", "accuracy_low", "trainable_params"} <= set(result.to_pandas().columns)
