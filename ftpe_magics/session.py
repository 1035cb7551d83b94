"""The one model session a notebook shares between cells.

Everything the magics do is a method here, so the same work runs from plain Python
(``Session().prompt(...)``), from tests, and from benchmarks. The model is loaded once and kept
until ``unload`` or a load of another model; a failed call never drops it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import torch

from .config import Ftpe
from .errors import FtpeError
from .generation import GenerationSettings, free_accelerator_memory, generate_texts
from .loading import folder_for, load_pretrained, resolve_device, resolve_dtype, resolve_source
from .memory import human_bytes, memory_summary
from .results import PromptResult
from .rows import as_rows
from .tables import KeyValueTable
from .templating import fill


class Session:
    """A loaded model and tokenizer plus the runs made with them."""

    def __init__(self, config: Ftpe | None = None, log: Callable[[str], None] = print) -> None:
        self.config = config or Ftpe()
        self.log = log
        self.model = None
        self.tokenizer = None
        self.source = None
        self.device: str | None = None
        self.dtype: torch.dtype | None = None
        self.load_count = 0
        self.load_seconds = 0.0
        self.history: list[PromptResult] = []
        self.named_runs: dict[str, PromptResult] = {}

    # -- model lifecycle -------------------------------------------------------------------
    @property
    def loaded(self) -> bool:
        return self.model is not None

    def load(self, model: str | None = None, device: str | None = None, dtype: str | None = None,
             trust_remote_code: bool = False) -> Session:
        """Load a model (default: ``config.default_model``, else the bundled SmolLM2), freeing any other first."""
        started = time.perf_counter()
        source = resolve_source(model if model is not None else (self.config.default_model or None))
        target_device = resolve_device(device or self.config.device)
        torch_dtype = resolve_dtype(dtype or self.config.dtype, target_device)
        location = folder_for(source, self.config.cache_dir)
        if source.kind == "hub":
            self._check_reachable(location, trust_remote_code)  # before the current model is freed
        self.unload(quiet=True)
        self.model, self.tokenizer = load_pretrained(location, source, target_device, torch_dtype, trust_remote_code)
        self.source, self.device, self.dtype = source, target_device, torch_dtype
        self.load_count += 1
        self.load_seconds = time.perf_counter() - started
        return self

    @staticmethod
    def _check_reachable(location: str, trust_remote_code: bool) -> None:
        from transformers import AutoConfig

        try:
            AutoConfig.from_pretrained(location, trust_remote_code=trust_remote_code)
        except (OSError, ValueError):
            raise FtpeError(
                f"Could not find '{location}': it is not a local folder, and the Hugging Face hub is unreachable "
                "or has no such model. Offline, point at a local folder (%ftpe load /path/to/model) "
                "or a .gguf file. The current model stays loaded."
            ) from None

    def unload(self, quiet: bool = False) -> None:
        """Free the model so its memory (GPU included) goes back."""
        if self.model is None:
            return
        label = self.source.label if self.source else "model"
        self.model = None
        self.tokenizer = None
        free_accelerator_memory()
        if not quiet:
            self.log(f"Unloaded {label}.")

    def require_model(self) -> None:
        """Load the default model if none is loaded, saying so in one line."""
        if not self.loaded:
            self.log("No model loaded: loading the default model (%ftpe load to choose another).")
            self.load()

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.model.parameters()) if self.loaded else 0

    def status(self) -> KeyValueTable:
        rows: list[tuple[str, Any]] = [("model", self.source.label if self.loaded else "(none loaded)")]
        if self.loaded:
            rows += [("source", f"{self.source.kind}: {self.source.location}"), ("device", self.device),
                     ("dtype", str(self.dtype).replace("torch.", "")),
                     ("parameters", f"{self.parameter_count():,}"), ("load time", f"{self.load_seconds:.2f}s")]
        memory = memory_summary(self.device or "cpu")
        rows += [(key.replace("_", " "), human_bytes(value)) for key, value in memory.items()]
        rows += [("runs this session", len(self.history)), ("cache folder", self.config.cache_dir)]
        return KeyValueTable("ftpe session", rows)

    # -- prompting --------------------------------------------------------------------------
    def settings(self, **overrides: Any) -> GenerationSettings:
        """Generation settings from the config, with any non-None overrides."""
        base = {"max_new_tokens": self.config.max_new_tokens, "batch_size": self.config.batch_size}
        base.update({key: value for key, value in overrides.items() if value is not None})
        return GenerationSettings(**base)

    def prompt(self, template: str, namespace: Mapping[str, Any] | None = None, over: Any = None,
               name: str | None = None, stream: bool = False, **settings: Any) -> PromptResult:
        """Fill ``template`` (per row of ``over`` if given) and generate; a ``name`` keeps it for re-run diffs."""
        namespace = namespace or {}
        gen_settings = self.settings(**settings)
        rows = as_rows(over) if over is not None else None
        prompts = ([fill(template, {**namespace, **row}) for row in rows] if rows is not None
                   else [fill(template, namespace)])
        self.require_model()
        run = generate_texts(self.model, self.tokenizer, prompts, gen_settings, stream=stream)
        result = PromptResult(template=template, prompts=prompts, outputs=run.outputs, settings=run.settings,
                              model=self.source.label, seconds=run.seconds, prompt_tokens=run.prompt_tokens,
                              rows=rows, name=name, interrupted=run.interrupted,
                              previous=self.named_runs.get(name) if name else None)
        self.history.append(result)
        if name:
            self.named_runs[name] = result
        return result

    def history_table(self):
        import pandas as pd

        return pd.DataFrame([{"run": index, "name": result.name or "", "time": result.created.strftime("%H:%M:%S"),
                              "prompts": len(result.prompts), "samples": result.settings.samples,
                              "seconds": round(result.seconds, 3), "interrupted": result.interrupted,
                              "first output": result.outputs[0][0][:60]} for index, result in enumerate(self.history)])


_SESSION: Session | None = None


def get_session() -> Session:
    """The session the magics use; plain Python code can share it."""
    global _SESSION
    if _SESSION is None:
        _SESSION = Session()
    return _SESSION
