"""The one model session a notebook shares between cells: a thin facade over three parts.

- :class:`~.model.LoadedModel`: the base model and tokenizer, loaded once;
- :class:`~.adapters.AdapterRegistry`: named adapters on that base, and which one is active;
- :class:`~.runs.RunLog`: prompt history, named runs and few-shot configurations;
- :class:`~.recording.RunRecorder`: the run store, the result cache, adapters on disk and MLflow,
  which keep all of that beyond the kernel.

Everything the magics do is a method here, so the same work runs from plain Python
(``Session().prompt(...)``), from tests, benchmarks and worker processes. A failed call never
drops the model. Messages for the user go through ``log`` (the ``ftpe_magics`` logger unless
given; the magics pass ``print``), never straight to stdout.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .adapters.files import load_adapter, save_adapter
from .adapters.registry import Adapter, AdapterRegistry, attach, detach
from .config import Ftpe
from .data.examples import Examples, as_rows, load_examples, share_label_set
from .errors import FtpeError, MaskedLog
from .evaluation.comparison import CompareResult, run_conditions
from .evaluation.condition_kinds import ConditionContext, parse_conditions
from .evaluation.evaluator import Evaluator
from .evaluation.identity import adapter_fingerprint, data_fingerprint, fewshot_condition_identity
from .evaluation.learning_curve import LearningCurve, run_curve, usable_pool
from .evaluation.metrics import resolve_metric
from .finetune.features import split_validation
from .finetune.observers import TrainingObserver
from .finetune.options import FinetuneOptions, LaunchOptions
from .inference.generation import GenerationSettings, generate_texts
from .model.loading import LoadedModel, check_reachable, folder_for, resolve_device, resolve_dtype, resolve_source
from .model.loading import display_path as _display_path
from .model.placement import Placement
from .options import CompareOptions, CurveOptions, DataOptions, EvalOptions, FewShotOptions, with_config_defaults
from .persistence.recorder import RunRecorder
from .persistence.records import versions
from .prompting.fewshot import FewShotConfig
from .prompting.prompt_result import PromptResult
from .prompting.templates import ExampleTemplate, fill, template_fields
from .run_log import RunLog

_LOGGER = logging.getLogger("ftpe_magics")


class Session:
    """A loaded model and tokenizer, its adapters, and the runs made with them."""

    def __init__(self, config: Ftpe | None = None, log: Callable[[str], None] | None = None) -> None:
        self.log = log or _LOGGER.info
        self.recorder = RunRecorder(config or Ftpe(), lambda message: self.log(message))
        self.loaded_model = LoadedModel()
        self.adapters = AdapterRegistry(self.loaded_model, loader=self._stored_adapter)
        self.runs = RunLog()
        # model key -> text -> vector: ``similar`` selection embeds a pool once for every configuration and k
        self.embedding_cache: dict[str, dict] = {}

    # -- the parts, as the rest of the package and user code read them -------------------------------
    @property
    def log(self) -> Callable[[str], None]:
        """Where the session's one-line notices go; every line has the credentials of any URI in it masked."""
        return self._log

    @log.setter
    def log(self, log: Callable[[str], None]) -> None:
        self._log = log if isinstance(log, MaskedLog) else MaskedLog(log)

    @property
    def config(self) -> Ftpe:
        return self.recorder.config

    @config.setter
    def config(self, config: Ftpe) -> None:
        self.recorder.config = config

    @property
    def loaded(self) -> bool:
        return self.loaded_model.loaded

    @property
    def model(self):
        """The model every call runs now: the base, or the active adapter on it."""
        return self.adapters.model

    @property
    def base_model(self):
        return self.loaded_model.model

    @property
    def tokenizer(self):
        return self.loaded_model.tokenizer

    @property
    def model_key(self) -> str:
        """Names the weights in use now (this load, this adapter): a cache key that dies with them."""
        return f"{self.loaded_model.load_id}:{self.adapters.active or 'base'}"

    @property
    def active_adapter(self) -> str | None:
        return self.adapters.active

    @property
    def source(self):
        return self.loaded_model.source

    @property
    def device(self) -> str | None:
        return self.loaded_model.device

    @property
    def load_count(self) -> int:
        return self.loaded_model.load_count

    @property
    def load_seconds(self) -> float:
        return self.loaded_model.load_seconds

    @property
    def history(self) -> list[PromptResult]:
        return self.runs.history

    @property
    def named_runs(self) -> dict[str, PromptResult]:
        return self.runs.named_runs

    @property
    def fewshot_configs(self) -> dict[str, FewShotConfig]:
        return self.runs.fewshot_configs

    def parameter_count(self) -> int:
        return self.loaded_model.parameter_count()

    def environment(self) -> dict[str, Any]:
        """What every stored run says about where it ran: the model by id and weight fingerprint, device,
        dtype and library versions (never a path of this machine)."""
        loaded = self.loaded_model
        placed = loaded.placement.as_dict()  # 4-bit weights score differently: part of every cache key when set
        return {"model": loaded.source.model_id, "model_fingerprint": loaded.fingerprint, "device": loaded.device,
                "dtype": str(loaded.dtype).replace("torch.", ""), "versions": versions(),
                **({"placement": placed} if placed else {})}

    @property
    def weights_key(self) -> str:
        """Names the weights in use now across kernels (the base by fingerprint, the active adapter by its own):
        the key of embeddings kept in the run store."""
        active = self.adapters.active
        return f"{self.loaded_model.fingerprint}:{adapter_fingerprint(self.adapters[active]) if active else 'base'}"

    def stored_embeddings(self, texts: list[str]) -> dict:
        return self.recorder.embeddings(self.weights_key, texts)

    def keep_embeddings(self, vectors: dict) -> None:
        self.recorder.keep_embeddings(self.weights_key, vectors)

    # -- model lifecycle -----------------------------------------------------------------------------
    def load(self, model: str | None = None, device: str | None = None, dtype: str | None = None,
             trust_remote_code: bool = False, quantize: str | None = None, device_map: str | None = None,
             max_memory: str | None = None) -> Session:
        """Load a model (default: ``config.default_model``, else the bundled SmolLM2), freeing any other first.

        ``quantize`` (``4bit``, ``8bit``) and ``device_map`` (``auto``...) are for models that do not fit one device
        as they are; see :mod:`.placement`."""
        started = time.perf_counter()
        placement = Placement(quantize, device_map, max_memory)
        source = resolve_source(model if model is not None else (self.config.default_model or None))
        target_device = resolve_device(device or self.config.device)
        torch_dtype = resolve_dtype(dtype or self.config.dtype, target_device)
        location = folder_for(source, self.config.cache_dir, self.log)
        if source.kind == "hub":
            check_reachable(location, trust_remote_code)  # before the current model is freed
        previous, dropped = self.source, len(self.adapters)
        self.loaded_model.load(source, location, target_device, torch_dtype, trust_remote_code, started, placement)
        self.adapters.clear()  # only now: a failed load above leaves the model and its adapters as they were
        self.embedding_cache.clear()
        if dropped:
            self.log(f"Dropped {dropped} adapter(s) trained on {previous.label}: they belong to that model "
                     "(%ftpe save keeps one before loading another).")
        return self

    def unload(self, quiet: bool = False) -> None:
        """Free the model so its memory (GPU included) goes back."""
        if not self.loaded:
            return
        label = self.source.label if self.source else "model"
        if self.adapters and not quiet:
            self.log(f"Dropped {len(self.adapters)} adapter(s) trained on {label}: %ftpe save them first to keep them.")
        self.adapters.clear()
        self.embedding_cache.clear()
        self.loaded_model.unload()
        if not quiet:
            self.log(f"Unloaded {label}.")

    def require_model(self) -> None:
        """Load the default model if none is loaded, saying so in one line."""
        if not self.loaded:
            self.log("No model loaded: loading the default model (%ftpe load to choose another).")
            self.load()

    def status(self) -> dict[str, Any]:
        """Model, source, device, dtype, parameters, load time, memory, adapters, runs: ``%ftpe status``."""
        return dict(self.loaded_model.status_rows() + [
            ("adapters", ", ".join(self.adapters) or "(none)"), ("active", self.adapters.active or "base"),
            ("runs this session", len(self.runs.history)), ("cache folder", _display_path(self.config.cache_dir)),
            ("run store", self._store_state())])

    def _store_state(self) -> str:
        if not self.config.store:
            return "off"
        shown = _display_path(self.config.store)
        return shown if self.recorder.store() is not None else f"{shown} (unusable: see above)"

    # -- adapters ------------------------------------------------------------------------------------
    def adapter(self, name: str) -> Adapter:
        return self.adapters.require(name)

    def use(self, name: str) -> None:
        """Make adapter ``name`` (or ``base``) the model of every later call, ``session.model`` included."""
        self.require_model()
        self.adapters.use(name)

    @contextmanager
    def using(self, name: str) -> Iterator[None]:
        """Run a block with adapter ``name`` (or ``base``) active, then switch back."""
        self.require_model()
        with self.adapters.using(name):
            yield

    def add_adapter(self, adapter: Adapter) -> None:
        self.adapters.add(adapter)

    def delete_adapter(self, name: str) -> list[str]:
        """Forget adapter ``name`` in the session and remove it from the run store's folder; returns where it was
        removed from (an unknown name is an error)."""
        removed = []
        if name in self.adapters:
            self.adapters.delete(name)
            removed.append("the session")
        folder = self.recorder.delete_stored(name, self.loaded_model.fingerprint) if self.loaded else None
        if folder:
            removed.append(folder)
        if not removed:
            self.adapters.require(name)  # the one-line error naming the adapters there are
        return removed

    def _stored_adapter(self, name: str) -> Adapter | None:
        """An adapter of the loaded base kept in the run store, read on first use (``%ftpe use``, %%compare)."""
        if not self.loaded:
            return None
        adapter = self.recorder.load_stored_adapter(name, self.loaded_model.fingerprint, self.device)
        if adapter is not None:
            self._check_fits(adapter, name)
        return adapter

    def save_adapter(self, name: str, path: str) -> str:
        """Write adapter ``name`` to the folder ``path`` and return it. Only a new folder, an empty one or an
        earlier save of ours is written (and that replacement is said); anything else is refused, never moved."""
        folder, replaced = save_adapter(self.adapters.require(name), path)
        if replaced:
            self.log(f"Replaced the adapter saved in {_display_path(folder)} before.")
        return str(folder)

    def export(self, name: str, path: str, merged: bool = True) -> str:
        """Write adapter ``name`` merged into a copy of the base as a standalone transformers folder (``merged``), or
        as the adapter folder ``save_adapter`` writes; returns the folder."""
        if not merged:
            return self.save_adapter(name, path)
        from .adapters.export import export_merged

        self.require_model()
        folder, replaced = export_merged(self.base_model, self.tokenizer, self.adapters.require(name), path)
        if replaced:
            self.log(f"Replaced the export in {_display_path(folder)} before.")
        return str(folder)

    def load_adapter(self, path: str, name: str | None = None) -> Adapter:
        """Read a saved adapter; one that does not fit the loaded model is refused here, not at first use."""
        self.require_model()
        adapter = load_adapter(path, name or Path(path).expanduser().name, self.device, self.loaded_model.fingerprint)
        self._check_fits(adapter, path)
        self._add_adapter(adapter)
        return adapter

    def _add_adapter(self, adapter: Adapter) -> None:
        """Keep a new adapter; replacing the active one of that name leaves the base active, which is said."""
        replaced_active = self.adapters.active == adapter.name
        self.adapters.add(adapter)
        if replaced_active:
            self.log(f"Adapter {adapter.name!r} was active and is replaced by the new one: the base model is active "
                     f"now (%ftpe use {adapter.name} activates the new one).")

    def _check_fits(self, adapter: Adapter, path: str) -> None:
        base = self.loaded_model.model
        if adapter.model is not None:
            own = {k: tuple(v.shape) for k, v in base.state_dict().items()}
            theirs = {k: tuple(v.shape) for k, v in adapter.model.state_dict().items()}
            if own != theirs:
                raise FtpeError(f"The model in {path} has another architecture than the model loaded "
                                "(its weights differ in names or shapes). Load its base model first.")
            return
        try:
            with self.adapters.using("base"):  # tried on the bare base; whatever was active is active again after
                detach(attach(base, adapter), base)
        except (RuntimeError, ValueError, KeyError) as error:
            lines = [line.strip() for line in str(error).splitlines() if line.strip()] or [type(error).__name__]
            first = next((line for line in lines if "size mismatch" in line), lines[0])[:140]
            raise FtpeError(f"The adapter in {path} does not fit the model loaded ({first}); it was trained on "
                            "another model. Load that model first.") from None

    def adapters_table(self):
        """Adapters in the session, then those of the loaded base kept in the run store (with their status)."""
        import pandas as pd

        rows = [{**row, "stored": False} for row in self.adapters.rows()]
        stored = self.recorder.stored_adapters(self.loaded_model.fingerprint) if self.loaded else []
        for entry in stored:
            mine = next((row for row in rows if row["name"] == entry["name"]), None)
            if mine is not None:
                mine.update(stored=True, folder=entry["folder"])
            else:
                rows.append({"name": entry["name"], "method": entry["method"], "status": entry["status"],
                             "best_val_accuracy": entry["best_val_accuracy"], "active": False, "stored": True,
                             "folder": entry["folder"]})
        return pd.DataFrame(rows)

    def history_table(self, kind: str | None = None, name: str | None = None, since: str | None = None):
        """Runs of the store, newest first (this kernel's and earlier ones); with the store off, this session's
        prompts."""
        import pandas as pd

        from .persistence.recorder import parse_since

        parse_since(since)  # a bad --since is an error whether or not the store is on
        if self.config.store:
            return pd.DataFrame(self.recorder.runs(kind, name, since),
                                columns=["id", "kind", "name", "created", "model", "status", "seconds", "summary"])
        return pd.DataFrame(self.runs.history_rows())

    def show(self, run_id: int) -> Any:
        """A stored run's result, rebuilt as it was shown: PromptResult, CompareResult or TrainingRecord."""
        return self.stored_run(run_id)[1]

    def stored_run(self, run_id: int) -> tuple[str, Any]:
        """The view a stored run was shown in (prompt, compare, fewshot, sweep, finetune) and its result."""
        return self.recorder.stored_run(run_id)

    # -- prompting -----------------------------------------------------------------------------------
    def settings(self, **overrides: Any) -> GenerationSettings:
        """Generation settings from the config, with any non-None overrides."""
        given = GenerationSettings(**{key: value for key, value in overrides.items() if value is not None})
        return with_config_defaults(given, self.config)

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
        if run.truncated:
            self.log(f"Cut {run.truncated} prompt(s) on the left to fit the model's context (--truncate).")
        previous = self.runs.previous(name) or (self.recorder.previous_prompt(name) if name else None)
        result = PromptResult(template=template, prompts=prompts, outputs=run.outputs, settings=run.settings,
                              model=self.source.label, seconds=run.seconds, prompt_tokens=run.prompt_tokens,
                              rows=rows, name=name, interrupted=run.interrupted, previous=previous)
        self.runs.record_prompt(result)
        self.recorder.record_prompt(result, {**self.environment(), "adapter": self.adapters.active})
        return result

    # -- evaluation ----------------------------------------------------------------------------------
    def examples(self, source: Any, what: str, data: DataOptions | None = None, limit: int | None = None,
                 require_labels: bool = True) -> Examples:
        """Load a dataset argument (DataFrame, Dataset, list of dicts, CSV/TSV/JSONL path), checked."""
        data = data or DataOptions()
        loaded = load_examples(source, data.input_col, data.label_col, data.labels, data.label_names, what=what,
                               require_labels=require_labels)
        for notice in loaded.notices:
            self.log(notice)
        return loaded.head(limit) if limit else loaded

    def evaluator(self, eval_data: Examples, evaluation: EvalOptions, namespace: Mapping[str, Any] | None = None,
                  compare: CompareOptions | None = None) -> Evaluator:
        self.require_model()
        compare = compare or CompareOptions()
        metric = resolve_metric(evaluation.metric, namespace) if evaluation.metric else None
        defaults = self.settings(batch_size=evaluation.batch_size)
        return Evaluator(self, eval_data, defaults, metric=metric, norm=evaluation.norm, samples=compare.samples,
                         seed=evaluation.seed, max_new_tokens=evaluation.max_new_tokens,
                         answer_regex=compare.answer_regex, namespace=namespace)

    def fewshot(self, body: str, train: Any, eval: Any, *, name: str | None = None,
                fewshot: FewShotOptions | None = None, data: DataOptions | None = None,
                evaluation: EvalOptions | None = None, namespace: Mapping[str, Any] | None = None,
                **options: Any) -> CompareResult:
        """Score k-shot prompts built from ``train`` on ``eval``; the named config is kept for %%compare.

        Options come as option objects or as keywords (``k=4, select="balanced", limit=100``).
        With ``metric`` the task is generation: the answer is generated after the prompt and scored.
        """
        fewshot, data, evaluation = _split_options(options, fewshot or FewShotOptions(), data or DataOptions(),
                                                   evaluation or EvalOptions())
        template = ExampleTemplate.from_body(body)
        eval_data = self.examples(eval, "--eval", data, evaluation.limit)
        train_data = self.examples(train, "--train", data)
        share_label_set(eval_data, train_data, data.labels)
        config = FewShotConfig(name or f"fewshot-k{fewshot.k}", template, train_data, k=fewshot.k,
                               select=fewshot.select, seed=evaluation.seed, orders=fewshot.orders,
                               allow_overlap=fewshot.allow_overlap, calibrate=fewshot.calibrate)
        search_log = None
        if fewshot.search:
            config, search_log = self._search_fewshot(config, eval_data, fewshot, evaluation, namespace)
        evaluator = self.evaluator(eval_data, evaluation, namespace)
        cache = self.recorder.condition_cache(evaluator, self.environment(), use=not evaluation.no_cache)
        record = {**self.environment(), "template": body, "data": {"eval": data_fingerprint(eval_data),
                  "train": data_fingerprint(train_data)}, "settings": _settings(fewshot, data, evaluation)}
        cache.record_now = record  # each k of a sweep is kept as soon as it is scored
        ks = fewshot.sweep or [config.k]
        results: list = []
        try:
            for k in ks:
                label = f"{config.name} k={k}" if fewshot.sweep else config.name
                results.append(cache.run(label, fewshot_condition_identity(evaluator, config, k),
                                         lambda label=label, k=k: evaluator.fewshot(label, config, k=k)))
                if results[-1].interrupted:
                    break
        except KeyboardInterrupt:
            pass  # stopped between forward passes: what finished is kept
        self._report(evaluator, results, [f"k={k}" for k in ks[len(results):]])
        self.runs.keep_fewshot(config)
        result = CompareResult(results, eval_data.texts, title=config.name, search_log=search_log,
                               model_params=self.parameter_count())
        self.recorder.record_comparison("fewshot", result, cache, record, name=name, sweep=bool(fewshot.sweep))
        return result

    def _search_fewshot(self, config: FewShotConfig, eval_data: Examples, fewshot: FewShotOptions,
                        evaluation: EvalOptions, namespace: Mapping[str, Any] | None) -> tuple[FewShotConfig, list]:
        """``--search N``: candidates scored on a validation split of the pool (the eval set is not read); the
        best configuration, drawing from the pool the search used, and the search log."""
        from .evaluation.prompt_search import Candidate, check_verbalizers, draw_candidates, run_search, search_split

        instructions = _variable_list(fewshot.instructions, "--instructions", namespace, str)
        verbalizers = check_verbalizers(_variable_list(fewshot.verbalizers, "--verbalizers", namespace, dict),
                                        config.train.label_set)
        pool, val, leaked = search_split(config.train, eval_data, fewshot.val_split, evaluation.seed)
        if leaked:
            self.log(f"Search: removed {leaked} training example(s) whose text is also in the eval set, before "
                     "drawing the validation split.")
        if config.k > len(pool):
            raise FtpeError(f"--k {config.k} is more than the {len(pool)} examples the search draws demonstrations "
                            f"from (--train less its --val-split {fewshot.val_split:g}); use --k {len(pool)} or fewer.")
        too_big = [k for k in fewshot.search_ks if k > len(pool)]
        if too_big:
            self.log(f"Search: --search-k {', '.join(map(str, too_big))} left out (more than the {len(pool)} examples "
                     "the search draws from).")
        base = dataclasses.replace(config, train=pool)
        first = Candidate(config.k, config.select, config.seed)
        candidates = draw_candidates(fewshot.search, first, fewshot.search_ks, len(instructions), len(verbalizers),
                                     len(pool), evaluation.seed)
        val_evaluator = self.evaluator(val, dataclasses.replace(evaluation, limit=None), namespace)
        return run_search(val_evaluator.fewshot, base, candidates, instructions, verbalizers, say=self.log)

    def compare(self, body: str, eval: Any, *, train: Any = None, compare: CompareOptions | None = None,
                data: DataOptions | None = None, evaluation: EvalOptions | None = None,
                curve: CurveOptions | None = None, namespace: Mapping[str, Any] | None = None,
                **options: Any) -> CompareResult:
        """Run every condition of ``body`` (one per line) on the same eval set, in one table; with ``train``, the
        conditions that learn from data run on it (at each of ``sizes``: a learning curve, see
        :mod:`.learning_curve`)."""
        compare, data, evaluation, curve = _split_options(options, compare or CompareOptions(), data or DataOptions(),
                                                          evaluation or EvalOptions(), curve or CurveOptions())
        if train is None and curve.sizes:
            raise FtpeError("--sizes draws training sets from --train; add --train VAR.")
        specs = parse_conditions(body)
        eval_data = self.examples(eval, "--eval", data, evaluation.limit, require_labels=evaluation.metric is None)
        evaluator = self.evaluator(eval_data, evaluation, namespace, compare)
        cache = self.recorder.condition_cache(evaluator, self.environment(), use=not evaluation.no_cache)
        context = self._context(evaluator, evaluation, namespace)
        train_data = self.examples(train, "--train", data) if train is not None else None
        settings = _settings(compare, data, evaluation, curve)
        record = {**self.environment(), "conditions": body, "settings": settings,
                  "data": {"eval": data_fingerprint(eval_data), "train": data_fingerprint(train_data)}}
        learning_curve = None
        cache.record_now = record  # each result is kept as soon as it exists: a later line that fails costs none
        if train_data is None:
            results, not_run = run_conditions(context, evaluator, specs, cache)
        else:
            share_label_set(eval_data, train_data, data.labels)
            learning_curve, not_run = self._curve(context, evaluator, specs, train_data, curve, evaluation, namespace,
                                                  cache)
            results = next((p.conditions for p in reversed(learning_curve.points) if p.repeat == 0), [])
        self._report(evaluator, results, not_run)
        result = CompareResult(results, eval_data.texts, model_params=self.parameter_count(), curve=learning_curve)
        self.recorder.record_comparison("compare", result, cache, record)
        self.recorder.track("the comparison", lambda tracker: tracker.compare(result, settings, record["model"]))
        return result

    def _context(self, evaluator: Evaluator, evaluation: EvalOptions,
                 namespace: Mapping[str, Any] | None) -> ConditionContext:
        """What %%compare's conditions may use: adapters, named few-shot configurations, and this session's own
        few-shot search (on a condition's pool; never the eval set) and training (on ``train_pool``)."""
        def search(config: FewShotConfig, options: FewShotOptions) -> tuple[FewShotConfig, list]:
            return self._search_fewshot(config, evaluator.eval_data, options, evaluation, namespace)

        def train_one(name: str, template: ExampleTemplate, data: Examples, options: FinetuneOptions) -> Adapter:
            with self.adapters.using("base"):  # the adapter the user made active is active again after
                return self._fit(name, template, *_held_out(data, options), options, [], LaunchOptions())

        return ConditionContext(self.adapters, self.runs.fewshot_configs, search_fewshot=search, train=train_one)

    def _curve(self, context: ConditionContext, evaluator: Evaluator, specs: list, train: Examples,
               curve: CurveOptions, evaluation: EvalOptions, namespace: Mapping[str, Any] | None,
               cache: Any) -> tuple[LearningCurve, list[str]]:
        """The conditions at every size of ``train`` (all of it without ``--sizes``); few-shot searches and
        fine-tunes run on each draw with this session's own search and training."""
        pool, removed = usable_pool(train, evaluator.eval_data)
        if not len(pool):
            raise FtpeError("Every example of --train is also in --eval: nothing is left to learn from. Give a "
                            "training set apart from the held-out one.")
        if removed:
            self.log(f"Removed {removed} training example(s) whose text is also in the eval set: they are never "
                     "trained on or drawn as demonstrations.")
        sizes = curve.size_list or [len(pool)]
        cache.quiet = True
        learning_curve, not_run = run_curve(context, evaluator, specs, pool, sizes, curve.repeats, evaluation.seed,
                                            cache, self.log if len(sizes) * curve.repeats > 1 else lambda m: None)
        learning_curve.removed = removed
        if cache.from_store:
            self.log(f"Read {cache.from_store} of the curve's {len(cache.entries)} results from the run store (same "
                     "weights, data and settings as before; --no-cache runs them again).")
        return learning_curve, not_run

    def _report(self, evaluator: Evaluator, results: list, not_run: list[str]) -> None:
        """Say what the scores need said (interruptions, label notices); remember finished prompting scores."""
        if not results:
            raise FtpeError("Stopped before any condition finished: nothing was scored.")
        for notice in dict.fromkeys(evaluator.notices):
            self.log(notice)
        stopped = [r.condition for r in results if r.interrupted]
        if stopped or not_run:
            self.log(f"Stopped: {', '.join(stopped) or 'nothing'} interrupted (partial outputs kept, not scored)"
                     + (f"; not run: {', '.join(not_run)}." if not_run else "."))
        self.runs.remember_scores([r for r in results if not r.interrupted])

    # -- fine-tuning ---------------------------------------------------------------------------------
    def finetune(self, body: str, train: Any, name: str, eval: Any = None, *,
                 finetune: FinetuneOptions | None = None, data: DataOptions | None = None,
                 launch: LaunchOptions | None = None, observers: Sequence[TrainingObserver] = (),
                 **options: Any) -> Adapter:
        """Train adapter ``name`` on ``train`` with the example template ``body``; the base model stays intact.

        Options come as a :class:`FinetuneOptions` or as keywords (``method="lora", epochs=2``, ``nproc=2`` to
        train in worker processes); ``observers`` hear of every step, log, validation and the end (the live view
        is one).
        """
        finetune, data, launch = _split_options(options, finetune or FinetuneOptions(), data or DataOptions(),
                                                launch or LaunchOptions())
        template = ExampleTemplate.from_body(body)
        self.require_model()
        train_data = self.examples(train, "--train", data)
        val_data = None
        if eval is not None:
            val_data = self.examples(eval, "--eval", data)
            share_label_set(train_data, val_data, data.labels)
        else:
            train_data, val_data = _held_out(train_data, finetune)
        loaded = self.loaded_model
        checkpoints = self.recorder.checkpoints(name, finetune.method, loaded.source.model_id, loaded.fingerprint)
        try:
            with self.adapters.using("base"):  # trained on the bare base; the adapter active before is active after
                adapter = self._fit(name, template, train_data, val_data, finetune, list(observers), launch,
                                    checkpoints)
        except BaseException:
            if checkpoints is not None:
                checkpoints.failed()
            raise
        adapter.base_model_id, adapter.base_fingerprint = loaded.source.model_id, loaded.fingerprint
        self._add_adapter(adapter)
        self._record_finetune(adapter, body, train_data, val_data, (finetune, launch), checkpoints)
        return adapter

    def _fit(self, name: str, template: ExampleTemplate, train: Examples, val: Examples | None,
             options: FinetuneOptions, observers: list[TrainingObserver], launch: LaunchOptions,
             checkpoints: TrainingObserver | None = None) -> Adapter:
        """One training run, or a search of them (``--search``); ``checkpoints`` keeps the adapter on disk as it
        trains, or, after a search, the chosen trial's."""
        unfilled = template_fields(template.instructions)
        if unfilled:
            raise FtpeError(f"The instructions above the example hold {{{unfilled[0]}}}, which a fine-tune does not "
                            f"fill: write the text itself, or {{{{{unfilled[0]}}}}} for literal braces.")
        if options.search:
            adapter = self._search_finetune(name, template, train, val, options, observers, launch)
            if checkpoints is not None:
                checkpoints.end(adapter)
            return adapter
        return self._train(name, template, train, val, options, [*observers, *([checkpoints] if checkpoints else [])],
                           launch)

    def _search_finetune(self, name: str, template: ExampleTemplate, train: Examples, val: Examples,
                         options: FinetuneOptions, observers: list[TrainingObserver], launch: LaunchOptions) -> Adapter:
        """``--search N``: trials trained in the kernel, each judged on ``val``; the best adapter, its trials in
        ``search_log``."""
        from .finetune.search import search

        if launch.nproc:
            raise FtpeError("--search trains its trials in the kernel; leave out --nproc (or search first, then "
                            "train the chosen settings with --nproc).")
        outcome = search(lambda trial_options, watchers: self._train(name, template, train, val, trial_options,
                                                                     [*observers, *watchers], launch),
                         options, options.search, options.budget_minutes, self.log)
        return outcome.best

    def _record_finetune(self, adapter: Adapter, body: str, train: Examples, val: Examples | None,
                         options: tuple[FinetuneOptions, LaunchOptions], checkpoints: Any) -> None:
        record = {**self.environment(), "template": body, "data": {"train": data_fingerprint(train),
                  "val": data_fingerprint(val)}, "settings": _settings(*options), "seed": options[0].seed}
        self.recorder.record_finetune(adapter, record, checkpoints)
        folder = checkpoints.folder if checkpoints is not None and checkpoints.folder.is_dir() else None
        self.recorder.track(f"fine-tune {adapter.name!r}", lambda tracker: tracker.finetune(
            adapter, record["settings"], record["model"], folder))

    def _train(self, name: str, template: ExampleTemplate, train: Examples, val: Examples | None,
               options: FinetuneOptions, observers: list[TrainingObserver], launch: LaunchOptions) -> Adapter:
        """Check and tokenise first, then train on the base with no adapter attached, in the kernel or in worker
        processes (imported when first used: transformers' Trainer is slow to import)."""
        from .finetune.classify import prepare_classifier, train_head, train_probe
        from .finetune.methods import COPY_METHODS, is_classifier
        from .finetune.train import prepare, train_adapter

        loaded, batch = self.loaded_model, self.config.batch_size
        if loaded.placement.quantize and options.method in COPY_METHODS:
            raise FtpeError(f"--method {options.method} trains a copy of every weight, which a "
                            f"{loaded.placement.quantize} model cannot hold; use --method lora (QLoRA), or load the "
                            "model unquantised.")
        if launch.nproc:
            from .workers.launcher import check_method, train_in_workers

            check_method(options)
            job = prepare(loaded.tokenizer, name, template, train, val, options)
            return train_in_workers(job, launch, loaded, self.config.jobs_dir, observers, batch, self.log)
        if not is_classifier(options):
            job = prepare(loaded.tokenizer, name, template, train, val, options)
            self.adapters.use("base")
            return train_adapter(loaded.model, loaded.tokenizer, loaded.location, loaded.device, job, observers,
                                 eval_batch_size=batch)
        job = prepare_classifier(loaded.tokenizer, name, template, train, val, options)
        self.adapters.use("base")
        if options.method == "probe":
            return train_probe(loaded.model, loaded.tokenizer, job, batch, observers)
        return train_head(loaded.model, loaded.tokenizer, loaded.device, job, observers, eval_batch_size=batch)


def _settings(*options: Any) -> dict[str, Any]:
    """Every option of a run, as recorded with it."""
    return {key: value for item in options for key, value in dataclasses.asdict(item).items()}


def _held_out(train: Examples, options: FinetuneOptions) -> tuple[Examples, Examples | None]:
    """``--val-split`` of the training data (0.2 for a search, which is judged on validation), or no validation."""
    if options.val_split or options.search:
        return split_validation(train, options.val_split or 0.2, options.seed)
    return train, None


def _variable_list(value: Any, option: str, namespace: Mapping[str, Any] | None, item: type) -> list:
    """A list option given as a list, or as the name of a notebook variable holding one."""
    if value is None:
        return []
    if isinstance(value, str):
        if value not in (namespace or {}):
            raise FtpeError(f"{option}: no variable named {value!r} in the notebook. Define it first.")
        value = namespace[value]
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, item) for v in value):
        raise FtpeError(f"{option} takes a non-empty list of {item.__name__} values.")
    return list(value)


def _split_options(given: dict[str, Any], *defaults: Any) -> tuple:
    """Spread keyword options over the option objects that declare them; an unknown keyword is an error."""
    remaining = dict(given)
    out = []
    for options in defaults:
        names = {f.name for f in dataclasses.fields(options)}
        mine = {key: remaining.pop(key) for key in list(remaining) if key in names}
        out.append(dataclasses.replace(options, **mine) if mine else options)
    if remaining:
        raise TypeError(f"unknown option(s): {', '.join(sorted(remaining))}")
    return tuple(out)


_SESSION: Session | None = None


def get_session() -> Session:
    """The session the magics use; plain Python code can share it."""
    global _SESSION
    if _SESSION is None:
        _SESSION = Session()
    return _SESSION
