"""The example notebooks, executed headless in a real kernel on the default model."""

import re

import pytest
from notebook_runner import EXAMPLES, cell_text, errors, execute

pytestmark = pytest.mark.notebook


@pytest.fixture(scope="module")
def quickstart(executed_quickstart):
    return executed_quickstart


def test_quickstart_runs_without_errors(quickstart):
    assert errors(quickstart) == []


def _output_of(notebook, source_start: str) -> str:
    cells = [c for c in notebook.cells if c.cell_type == "code" and c.source.startswith(source_start)]
    assert cells, f"no cell starts with {source_start!r}"
    return cell_text(cells[-1])


_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/])/(?:home|root|tmp|work|usr|opt|var|Users)/[\w.-]+")


def test_the_quickstart_shows_no_warning_no_machine_path_and_no_stuck_progress_bar(quickstart):
    """What a newcomer sees: no library warning from our call paths, no absolute path of this machine, no
    third-party progress widget saved at 0%."""
    for cell in (c for c in quickstart.cells if c.cell_type == "code"):
        for output in cell.get("outputs", []):
            text = output.get("text", "") if output.get("output_type") == "stream" else ""
            data = output.get("data", {})
            html = re.sub(r"data:image/[^\"']+", "", data.get("text/html", ""))  # base64 is not a path
            shown = text + data.get("text/plain", "") + html
            assert "Warning" not in text and "warnings.warn" not in text, (cell.source[:60], text[:300])
            assert not _ABSOLUTE_PATH.search(shown), (cell.source[:60], _ABSOLUTE_PATH.search(shown).group(0))
            assert "application/vnd.jupyter.widget-view+json" not in data or "tqdm" not in str(data), cell.source[:60]
            assert "Loading weights" not in shown and "Writing model shards" not in shown, cell.source[:60]


def test_quickstart_shows_diff_table_and_answers(quickstart):
    assert "Diff against the previous run of <b>poem</b>" in _output_of(quickstart, "%%prompt --name poem --max")
    assert "system" in _output_of(quickstart, "%%prompt --name poem --max")
    assert "Paris" in _output_of(quickstart, "from ftpe_magics import get_session")
    labelled = _output_of(quickstart, "labelled.to_pandas()")
    assert labelled.count("<tr") >= 7  # header + six rows
    assert "SmolLM2-135M-Instruct" in _output_of(quickstart, "%ftpe status")


def test_quickstart_fewshot_finetune_and_compare_render(quickstart):
    fewshot = _output_of(quickstart, "%%fewshot")
    assert "accuracy" in fewshot and 'alt="accuracy against k"' in fewshot and "Confusion matrix" in fewshot
    finetune = _output_of(quickstart, "%%finetune")
    assert 'alt="training curves"' in finetune and "ftpe-finetune-summary" in finetune
    assert "Adapter 'lora'" in finetune
    compare = _output_of(quickstart, "%%compare")
    assert "ftpe-compare-table" in compare and 'alt="accuracy chart"' in compare
    for condition in ("zero", "fs4", "lora", "base"):
        assert f"<td>{condition}</td>" in compare
    table = _output_of(quickstart, "columns = ")
    assert table.count("<tr") >= 5


def test_quickstart_answers_a_repeated_comparison_from_the_run_store(quickstart):
    again = _output_of(quickstart, "again = session.compare")
    assert "zero: cached from run" in again and "lora: cached from run" in again
    history = _output_of(quickstart, "%ftpe history --kind compare")
    assert "compare" in history and "best " in history


def test_generation_notebook_scores_with_a_custom_metric():
    notebook = execute("03_generation_task.ipynb")
    assert errors(notebook) == []
    assert "(1.0, 0.0)" in _output_of(notebook, "import re")
    fewshot = _output_of(notebook, "%%fewshot")
    assert "accuracy" in fewshot
    compare = _output_of(notebook, "%%compare")
    assert "ftpe-compare-table" in compare and ("ftpe-disagreements" in compare or "All conditions agree" in compare)
    assert "Prague" in _output_of(notebook, "trips_table.examples()")


def test_sst2_notebook_runs_on_a_small_slice(sst2_dir, monkeypatch):
    monkeypatch.setenv("FTPE_NOTEBOOK_SMOKE", "1")  # the kernel inherits it: 64 training, 24 held-out examples
    notebook = execute("02_prompt_vs_finetune_sst2.ipynb")
    assert errors(notebook) == []
    assert "Best condition:" in _output_of(notebook, "summary = table")
    assert "24 held-out examples" in _output_of(notebook, "import os")


def test_committed_notebooks_hold_no_machine_paths_or_tokens():
    for path in sorted(EXAMPLES.glob("*.ipynb")):
        text = path.read_text()
        for marker in ("/work/", "/root/", "/home/", "/tmp/", "site-packages"):
            assert marker not in text, f"{path.name} contains {marker!r}"
        assert not re.search(r"token=[0-9a-f]{16,}", text), f"{path.name} contains a token"


def test_learning_curve_notebook_runs_on_a_small_slice(sst2_dir, monkeypatch):
    monkeypatch.setenv("FTPE_NOTEBOOK_SMOKE", "1")  # sizes 20 and 40, a few held-out examples
    monkeypatch.setenv("FTPE_STORE", "")  # compute, do not read a developer's run store
    # the SST-2 half: the CLINC150 half runs the same cells on 150 labels (scored in test_label_trie) and would
    # double the slowest test of the suite
    notebook = execute("04_when_does_finetuning_win.ipynb",
                       skip=lambda source: source.lstrip().startswith(("%%fewshot --train clinc", "%%compare --train "
                                                                       "clinc", "print(clinc", "import pandas"))
                       or "--sizes auto" in source)  # the adaptive curve is tested on the tiny model
    assert errors(notebook) == []
    shown = _output_of(notebook, "%%compare --train sst2_pool")
    assert "Learning curve" in shown and 'alt="learning curve"' in shown and "Crossover:" in shown
    assert all(line in shown for line in ("lora-search", "fewshot-split", "fewshot-cv", "probe", "head"))
    assert "Break-even:" in _output_of(notebook, "print(sst2.verdict())")


def test_extraction_notebook_runs_on_a_small_slice(snips_slots_dir, monkeypatch):
    monkeypatch.setenv("FTPE_NOTEBOOK_SMOKE", "1")  # n = 16, six held-out requests
    monkeypatch.setenv("FTPE_STORE", "")  # compute, do not read a developer's run store
    notebook = execute("05_extraction_prompt_vs_finetune.ipynb")
    assert errors(notebook) == []
    shown = _output_of(notebook, "%%compare --train pool")
    assert "valid_rate" in shown, shown[:3000]
    assert "tokens_generated" in shown, shown[:3000]
    assert all(f"<td>{line}</td>" in shown for line in ("zero", "fs4", "fs8", "lora"))
    verdict = _output_of(notebook, "print(slots.verdict())")
    assert re.search(r"(paired permutation test|exact McNemar test) on the same 6 examples", verdict)
    assert "valid JSON in" in verdict and "Break-even:" in verdict
    curve = _output_of(notebook, "columns = ")
    assert "valid_rate" in curve and curve.count("<tr") >= 5
