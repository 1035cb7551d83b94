"""Execute an example notebook headless in a real kernel and collect what it shows."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import nbformat
from nbclient import NotebookClient

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def execute(name: str, timeout: int = 1500, skip: Callable[[str], bool] | None = None) -> nbformat.NotebookNode:
    """Run the notebook; ``skip(source)`` leaves out the code cells it is true for (a shorter run)."""
    notebook = nbformat.read(EXAMPLES / name, as_version=4)
    if skip:
        notebook.cells = [c for c in notebook.cells if c.cell_type != "code" or not skip(c.source)]
    NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(EXAMPLES)}}).execute()
    return notebook


def cell_text(cell) -> str:
    """Everything a reader sees under a code cell: streams, plain text and HTML."""
    parts = []
    for output in cell.get("outputs", []):
        if output.output_type == "stream":
            parts.append(output.text)
        elif output.output_type == "error":
            parts.append(f"ERROR {output.ename}: {output.evalue}")
        else:
            data = output.get("data", {})
            parts += [data.get("text/html", ""), data.get("text/plain", "")]
    return "\n".join(parts)


def errors(notebook) -> list[str]:
    return [f"{o.ename}: {o.evalue}" for c in notebook.cells for o in c.get("outputs", []) if o.output_type == "error"]
