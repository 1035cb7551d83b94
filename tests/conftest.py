from __future__ import annotations

import os
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell
from tiny_model import save_tiny_model

from ftpe_magics import Session, get_session

# The run store is off unless a test turns it on (with a store of its own under tmp_path): a result cache
# shared between tests would answer one test with another's run. Kernels started by tests inherit this.
os.environ["FTPE_STORE"] = ""
# fp32 unless a test asks for another dtype: the exactness tests hold scores to 1e-4 of a naive loop, which bf16
# (auto on a CPU with native bf16, like this project's machines) does not meet. Kernels started by tests inherit it.
os.environ["FTPE_DTYPE"] = "fp32"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def tiny_session(tiny_model_dir, tmp_path_factory) -> Session:
    session = Session(log=lambda message: None)
    session.config.cache_dir = str(tmp_path_factory.mktemp("cache"))
    session.config.max_new_tokens = 8
    return session.load(str(tiny_model_dir))


@pytest.fixture(scope="session")
def default_session() -> Session:
    """The real default model, loaded once for all integration tests."""
    return Session(log=lambda message: None).load()


SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


@pytest.fixture(scope="session")
def sst2_dir() -> Path:
    folder = SHARED_DATA / "sst2"
    if not (folder / "dev.tsv").is_file():
        pytest.skip(f"SST-2 data not found at {folder} (the shared data folder sits beside the checkout)")
    return folder


@pytest.fixture(scope="session")
def snips_slots_dir() -> Path:
    folder = SHARED_DATA / "snips_slots"
    if not (folder / "test.tsv").is_file():
        pytest.skip(f"SNIPS slots data not found at {folder} (the shared data folder sits beside the checkout)")
    return folder


@pytest.fixture
def shell(tiny_model_dir, tmp_path, monkeypatch):
    """A real IPython shell with the extension loaded and the tiny model in the shared session."""
    monkeypatch.setenv("FTPE_CACHE", str(tmp_path / "cache"))
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "ftpe_magics")
    ip.run_line_magic("config", f"Ftpe.default_model = {str(tiny_model_dir)!r}")
    ip.run_line_magic("config", "Ftpe.max_new_tokens = 8")
    yield ip
    ip.run_line_magic("unload_ext", "ftpe_magics")
    get_session().unload(quiet=True)
    get_session().history.clear()
    get_session().named_runs.clear()


ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


@pytest.fixture(scope="session")
def executed_quickstart(tmp_path_factory):
    """examples/01_quickstart.ipynb executed headless once, also written to artifacts/ for the browser test.

    Its kernel gets a fresh run store of its own, so the notebook shows the store at work (a cached comparison)
    and never reads a store left by an earlier run."""
    import shutil
    import uuid

    import nbformat
    from notebook_runner import execute

    # relative to the kernel's working folder (examples/), as a user's store is: no machine path in the outputs
    folder = Path(".ftpe") / f"quickstart-test-{uuid.uuid4().hex[:8]}"
    os.environ["FTPE_STORE"] = str(folder / "runs.sqlite")
    try:
        notebook = execute("01_quickstart.ipynb")
    finally:
        os.environ["FTPE_STORE"] = ""
        shutil.rmtree(Path(__file__).resolve().parents[1] / "examples" / folder, ignore_errors=True)
    ARTIFACTS.mkdir(exist_ok=True)
    nbformat.write(notebook, ARTIFACTS / "01_quickstart.executed.ipynb")
    return notebook
