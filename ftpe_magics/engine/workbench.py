"""What every workflow works on: the loaded model, its adapters, the session's runs and the recorder that keeps
them beyond the kernel, with the few services they all use (load, the environment of a run, data, evaluators).

- :class:`~.model.loading.LoadedModel`: the base model and tokenizer, loaded once;
- :class:`~.adapters.registry.AdapterRegistry`: named adapters on that base, and which one is active;
- :class:`~.run_log.RunLog`: prompt history, named runs and few-shot configurations;
- :class:`~.persistence.recorder.RunRecorder`: the run store, the result cache, adapters on disk and MLflow.

The workflows (:mod:`.workflows`) take a ``Workbench``, so each runs and is tested without a
:class:`~.session.Session`, which is the facade over them. A failed call never drops the model. Messages for the
user go through ``log`` (the ``ftpe_magics`` logger unless given; the magics pass ``print``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from .adapters.fingerprint import adapter_fingerprint
from .adapters.registry import Adapter, AdapterRegistry, attach, detach
from .config import Ftpe
from .data.examples import Examples, load_examples
from .errors import FtpeError, MaskedLog
from .evaluation.evaluator import Evaluator
from .evaluation.judge import judge_from_options
from .evaluation.metrics import resolve_metric
from .inference.generation import GenerationSettings
from .inference.shared_work import ScoringShare, SharedScoring
from .model.load_options import LoadOptions
from .model.loading import (
    LoadedModel,
    check_reachable,
    display_path,
    folder_for,
    resolve_device,
    resolve_precision,
    resolve_source,
)
from .model.placement import Placement
from .model.signature import load_signature
from .options import CompareOptions, DataOptions, EvalOptions, spread_keywords, with_config_defaults
from .persistence.recorder import RunRecorder
from .persistence.records import versions
from .run_log import RunLog

_LOGGER = logging.getLogger("ftpe_magics")


class Workbench:
    """A loaded model and tokenizer, its adapters, and the runs made with them."""

    def __init__(self, config: Ftpe | None = None, log: Callable[[str], None] | None = None) -> None:
        self.log = log or _LOGGER.info
        self.recorder = RunRecorder(config or Ftpe(), lambda message: self.log(message))
        self.loaded_model = LoadedModel()
        self.adapters = AdapterRegistry(self.loaded_model, loader=self._stored_adapter,
                                        describer=self._stored_description)
        self.runs = RunLog()
        # model key -> text -> vector: ``similar`` selection embeds a pool once for every configuration and k
        self.embedding_cache: dict[str, dict] = {}
        self.shared_work: SharedScoring | None = None  # open during one search or comparison (``sharing_work``)

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

    loaded = property(lambda self: self.loaded_model.loaded, doc="Whether a model is loaded.")
    model = property(lambda self: self.adapters.model, doc="The model every call runs now: the base, or the active "
                                                           "adapter on it.")
    base_model = property(lambda self: self.loaded_model.model)
    tokenizer = property(lambda self: self.loaded_model.tokenizer)
    active_adapter = property(lambda self: self.adapters.active)
    source = property(lambda self: self.loaded_model.source)
    device = property(lambda self: self.loaded_model.device)
    load_count = property(lambda self: self.loaded_model.load_count)
    load_seconds = property(lambda self: self.loaded_model.load_seconds)
    history = property(lambda self: self.runs.history)
    named_runs = property(lambda self: self.runs.named_runs)
    fewshot_configs = property(lambda self: self.runs.fewshot_configs)

    @property
    def model_key(self) -> str:
        """Names the weights in use now (this load, this adapter): a cache key that dies with them."""
        return f"{self.loaded_model.load_id}:{self.adapters.active or 'base'}"

    @property
    def scoring_share(self) -> ScoringShare | None:
        """The open call's shared scoring work for the base model; None outside a call, and while an adapter is
        active (a trial's weights change as it trains, and a retrained adapter keeps its name)."""
        if self.shared_work is None or self.adapters.active is not None:
            return None
        return self.shared_work.for_weights(self.model_key)

    @contextlib.contextmanager
    def sharing_work(self) -> Iterator[SharedScoring]:
        """One call's shared work (label scores, prefix caches): opened by a search or a comparison, dropped when
        it ends; a call inside another shares the outer one's."""
        if self.shared_work is not None:
            yield self.shared_work
            return
        self.shared_work = SharedScoring()
        try:
            yield self.shared_work
        finally:
            self.shared_work = None

    @property
    def weights_key(self) -> str:
        """Names the weights in use now across kernels (the base by fingerprint, the active adapter by its own):
        the key of embeddings kept in the run store."""
        active = self.adapters.active
        return f"{self.loaded_model.fingerprint}:{adapter_fingerprint(self.adapters[active]) if active else 'base'}"

    def parameter_count(self) -> int:
        return self.loaded_model.parameter_count()

    def environment(self) -> dict[str, Any]:
        """What every stored run says about where it ran: the model by id and weight fingerprint, device,
        dtype and library versions (never a path of this machine)."""
        loaded = self.loaded_model
        placed = loaded.placement.as_dict()  # 4-bit weights score differently: part of every cache key when set
        training = loaded.precision.training if loaded.precision else loaded.dtype
        return {"model": loaded.source.model_id, "model_fingerprint": loaded.fingerprint, "device": loaded.device,
                "dtype": str(loaded.dtype).replace("torch.", ""), "versions": versions(),
                **({"placement": placed} if placed else {}),  # a fine-tune on a bf16 copy is another result
                **({"training_dtype": str(training).replace("torch.", "")} if training != loaded.dtype else {})}

    def stored_embeddings(self, texts: list[str]) -> dict:
        return self.recorder.embeddings(self.weights_key, texts)

    def keep_embeddings(self, vectors: dict) -> None:
        self.recorder.keep_embeddings(self.weights_key, vectors)

    # -- model lifecycle -----------------------------------------------------------------------------
    def load(self, model: str | None = None, options: LoadOptions | None = None, **keywords: Any) -> Workbench:
        """Load a model (default: ``config.default_model``, else the bundled SmolLM2), freeing any other first.

        Options come as a :class:`LoadOptions` or as its keywords (``device="cpu", quantize="4bit"``); ``quantize``
        and ``device_map`` are for models that do not fit one device as they are (see :mod:`.model.placement`)."""
        started = time.perf_counter()
        (options,) = spread_keywords(keywords, options or LoadOptions())
        options = with_config_defaults(options, self.config)
        source = resolve_source(model if model is not None else (self.config.default_model or None))
        target_device = resolve_device(options.device)
        location = folder_for(source, self.config.cache_dir, self.log)
        if source.kind == "hub":
            check_reachable(location, options.trust_remote_code)  # before the current model is freed
        previous, dropped = self.source, len(self.adapters)
        self.loaded_model.load(source, location, target_device, resolve_precision(options.dtype, target_device),
                               options.trust_remote_code, started,
                               Placement(options.quantize, options.device_map, options.max_memory))
        self.adapters.clear()  # only now: a failed load above leaves the model and its adapters as they were
        self.embedding_cache.clear()
        signature = load_signature(source, options, target_device) if self.config.store else None
        if signature is not None:  # a new kernel finds this load's cached results without loading (stored_load)
            self.recorder.keep_load(signature, self.environment(), self.parameter_count())
        if dropped:
            self.log(f"Dropped {dropped} adapter(s) trained on {previous.label}: they belong to that model "
                     "(%ftpe save keeps one before loading another).")
        return self

    def stored_load(self) -> dict | None:
        """What loading the configured model with the configured options gave before, read from the run store
        without loading it (``environment`` with today's versions, ``parameters``): None when it was never loaded
        with this store on, or its files changed since."""
        if self.loaded or not self.config.store:
            return None
        options = with_config_defaults(LoadOptions(), self.config)
        try:
            source = resolve_source(self.config.default_model or None)
            signature = load_signature(source, options, resolve_device(options.device))
        except (FtpeError, OSError):
            return None
        found = self.recorder.load_of(signature) if signature else None
        if found is None:
            return None
        return {"environment": {**found["environment"], "versions": versions()}, "parameters": found["parameters"]}

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
        store = display_path(self.config.store) if self.config.store else "off"
        if self.config.store and self.recorder.store() is None:
            store += " (unusable: see above)"
        return dict(self.loaded_model.status_rows() + [
            ("adapters", ", ".join(self.adapters) or "(none)"), ("active", self.adapters.active or "base"),
            ("runs this session", len(self.runs.history)), ("cache folder", display_path(self.config.cache_dir)),
            ("run store", store)])

    # -- adapters ------------------------------------------------------------------------------------
    def _stored_adapter(self, name: str) -> Adapter | None:
        """An adapter of the loaded base kept in the run store, read on first use (``%ftpe use``, %%compare)."""
        if not self.loaded:
            return None
        adapter = self.recorder.load_stored_adapter(name, self.loaded_model.fingerprint, self.device)
        if adapter is not None:
            self.check_fits(adapter, name)
        return adapter

    def _stored_description(self, name: str) -> Adapter | None:
        """An adapter of the loaded base kept in the run store, described without reading its weights."""
        return self.recorder.stored_reference(name, self.loaded_model.fingerprint) if self.loaded else None

    def keep_adapter(self, adapter: Adapter) -> None:
        """Keep a new adapter; replacing the active one of that name leaves the base active, which is said."""
        replaced_active = self.adapters.active == adapter.name
        self.adapters.add(adapter)
        if replaced_active:
            self.log(f"Adapter {adapter.name!r} was active and is replaced by the new one: the base model is active "
                     f"now (%ftpe use {adapter.name} activates the new one).")

    def check_fits(self, adapter: Adapter, path: str) -> None:
        """An adapter (or a trained copy) that does not fit the loaded base is refused when it is read."""
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

    # -- what every workflow reads -------------------------------------------------------------------
    def settings(self, **overrides: Any) -> GenerationSettings:
        """Generation settings from the config, with any non-None overrides."""
        given = GenerationSettings(**{key: value for key, value in overrides.items() if value is not None})
        return with_config_defaults(given, self.config)

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
                  compare: CompareOptions | None = None, load: bool = True) -> Evaluator:
        """An evaluator with the session's settings; ``load=False`` leaves the model as it is (for a comparison
        the run store answers, which names results by their settings and never scores)."""
        if load:
            self.require_model()
        compare = compare or CompareOptions()
        metric = resolve_metric(evaluation.metric, namespace) if evaluation.metric else None
        judge_spec = None
        if evaluation.metric == "judge":
            judge_spec = judge_from_options(evaluation.judge_template, evaluation.judge_grades, namespace)
        elif evaluation.judge_template or evaluation.judge_grades:
            raise FtpeError("--judge-template and --judge-grades go with --metric judge.")
        defaults = self.settings(batch_size=evaluation.batch_size)
        return Evaluator(self, eval_data, defaults, metric=metric, norm=evaluation.norm, samples=compare.samples,
                         seed=evaluation.seed, max_new_tokens=evaluation.max_new_tokens,
                         answer_regex=compare.answer_regex, namespace=namespace, judge_spec=judge_spec)


def shares_work(workflow: Callable) -> Callable:
    """Run a workflow (its first argument the workbench) inside one shared-work scope."""
    @functools.wraps(workflow)
    def run(bench: Workbench, *args: Any, **kwargs: Any) -> Any:
        with bench.sharing_work():
            return workflow(bench, *args, **kwargs)

    return run


def recorded_settings(*options: Any) -> dict[str, Any]:
    """Every option of a run, as recorded with it."""
    return {key: value for item in options for key, value in dataclasses.asdict(item).items()}
