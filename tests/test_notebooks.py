"""The example notebooks, executed headless in a real kernel on the default model."""

import pytest
from notebook_runner import cell_text, errors, execute

pytestmark = pytest.mark.notebook


@pytest.fixture(scope="module")
def quickstart():
    return execute("01_quickstart.ipynb")


def test_quickstart_runs_without_errors(quickstart):
    assert errors(quickstart) == []


def _output_of(notebook, source_start: str) -> str:
    cells = [c for c in notebook.cells if c.cell_type == "code" and c.source.startswith(source_start)]
    assert cells, f"no cell starts with {source_start!r}"
    return cell_text(cells[-1])


def test_quickstart_shows_diff_table_and_answers(quickstart):
    assert "Diff against the previous run of <b>poem</b>" in _output_of(quickstart, "%%prompt --name poem --max")
    assert "system" in _output_of(quickstart, "%%prompt --name poem --max")
    assert "Paris" in _output_of(quickstart, "from ftpe_magics import get_session")
    labelled = _output_of(quickstart, "labelled.to_pandas()")
    assert labelled.count("<tr") >= 7  # header + six rows
    assert "SmolLM2-135M-Instruct" in _output_of(quickstart, "%ftpe status")
