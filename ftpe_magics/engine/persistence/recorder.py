"""What the session keeps beyond the kernel: runs in the store, adapters beside it, MLflow for teams.

The session calls this after each run. Recording never costs a result: a store that cannot be
opened is said once (and the session goes on without it), and a write that fails is one line
while the result is shown and kept in memory as always.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from ..adapters.files import META, describe_adapter, load_adapter
from ..adapters.registry import Adapter
from ..errors import FtpeError, mask_credentials
from ..evaluation.comparison import CompareResult
from ..evaluation.evaluator import Evaluator
from ..evaluation.identity import evaluator_identity
from ..evaluation.learning_curve import curve_data, curve_from_data
from ..prompting.prompt_result import PromptResult
from .checkpoints import AdapterCheckpoints, remove_folder
from .records import condition_from_data, prompt_data, prompt_from_data
from .result_cache import ConditionCache
from .store import RUN_KINDS, RunStore, adapter_status


def text_hash(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


LISTED_KINDS = tuple(kind for kind in RUN_KINDS if kind != "condition")  # conditions are parts of comparisons
_SINCE = re.compile(r"^(\d+)\s*([mhdw])$")


@dataclass
class TrainingRecord:
    """A stored fine-tune as ``%ftpe show`` redisplays it: its summary row and curves."""

    name: str
    summary_row: dict
    history: list[dict] = field(default_factory=list)

    def summary(self) -> dict:
        return self.summary_row


def parse_since(text: str | None) -> str | None:
    """``--since``: a date (2026-11-22), a date and time, or an age (30m, 12h, 3d, 2w)."""
    if text is None:
        return None
    match = _SINCE.match(text.strip())
    if match:
        unit = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[match.group(2)]
        return (datetime.now() - timedelta(**{unit: int(match.group(1))})).isoformat(timespec="seconds")
    try:
        return datetime.fromisoformat(text.strip()).isoformat(timespec="seconds")
    except ValueError:
        raise FtpeError(f"--since {text!r} is neither a date (2026-11-22, 2026-11-22 14:00) nor an age "
                        "(30m, 12h, 3d, 2w).") from None


def _with_progress(store: RunStore, row: dict) -> dict:
    """A training adapter's step and best accuracy as its folder has them: the folder is written atomically with
    its description, so what it says is what loads (the row may be a write behind when a kernel dies)."""
    meta_file = store.folder / row["folder"] / META
    if row["status"] != "running" or not meta_file.is_file():
        return row
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, ValueError):
        return row
    return {**row, "step": meta.get("steps", row["step"]), "best_metric": meta.get("best_metric")}


class RunRecorder:
    """The run store at ``config.store`` (opened when first needed, again when the setting changes) and
    the MLflow tracker at ``config.mlflow_uri``."""

    def __init__(self, config: Any, log: Callable[[str], None]) -> None:
        self.config, self.log = config, log
        self._store: tuple[str, RunStore | None] | None = None
        self._said: set[str] = set()
        self._tracker: tuple[str, Any] | None = None

    def _say_once(self, message: str) -> None:
        if message not in self._said:
            self._said.add(message)
            self.log(message)

    def store(self, quiet: bool = False) -> RunStore | None:
        """The open store, or None when it is off or unusable (said once, with the fix; ``quiet`` leaves the
        saying to the next call that records a result, where the user looks for it)."""
        path = self.config.store
        if not path:
            return None
        if self._store is None or self._store[0] != path or self._store[1] is None:
            if self._store is not None and self._store[1] is not None:
                self._store[1].close()  # Ftpe.store now names another file
            try:
                self._store = (path, RunStore(path))
            except FtpeError as error:
                self._store = (path, None)
                if not quiet:
                    self._say_once(str(error))
        return self._store[1]

    def require_store(self) -> RunStore:
        """The open store, or the one-line reason there is none (for commands that only read the store)."""
        store = self.store()
        if store is not None:
            return store
        if not self.config.store:
            raise FtpeError("The run store is off (Ftpe.store is empty); %config Ftpe.store = \".ftpe/runs.sqlite\" "
                            "turns it on.")
        self._store = (self.config.store, RunStore(self.config.store))  # raises the reason, or it is usable now
        return self._store[1]

    @contextmanager
    def _safely(self, what: str) -> Iterator[None]:
        """A failing write is one line; the result it was recording stays in the session."""
        try:
            yield
        except (sqlite3.Error, OSError) as error:
            self._say_once(f"Could not record {what} in the run store {self.config.store} ({error}); the result is "
                           "shown and kept in this session.")

    # -- runs ------------------------------------------------------------------------------------------
    def record_prompt(self, result: PromptResult, environment: dict) -> None:
        store = self.store()
        if store is None:
            return
        with self._safely("the prompt"):
            record = {**environment, "template": result.template, "settings": result.settings.as_dict()}
            summary = (result.outputs[0][0] if result.outputs and result.outputs[0] else "")[:80]
            store.add_run("prompt", record, prompt_data(result), name=result.name,
                          status="interrupted" if result.interrupted else "finished", seconds=result.seconds,
                          summary=summary)

    def previous_prompt(self, name: str) -> PromptResult | None:
        """The last stored prompt run of this name, from any kernel, for the re-run diff."""
        store = self.store()
        if store is None:
            return None
        row = store.latest("prompt", name)
        return prompt_from_data(row["result"]) if row else None

    def condition_cache(self, evaluator: Evaluator, environment: dict, use: bool) -> ConditionCache:
        base = {key: environment[key] for key in ("model_fingerprint", "device", "dtype", "versions")}
        return ConditionCache(self.store(), {**base, **evaluator_identity(evaluator)}, self.log, use)

    def record_comparison(self, kind: str, result: CompareResult, cache: ConditionCache, record: dict,
                          name: str | None = None, sweep: bool = False) -> int | None:
        if cache.store is None:
            return None
        with self._safely(f"the {kind}"):
            cache.record(record)
            run_of = cache.run_ids()
            best = result.best
            summary = f"best {best.condition} {best.accuracy:.3f} ({len(result.conditions)} condition(s), " \
                      f"n={best.n})"
            payload = {"title": result.title, "eval_texts": result.eval_texts, "sweep": sweep,
                       "conditions": [run_of[id(c)] for c in result.conditions],
                       "search_log": result.search_log, "model_params": result.model_params,
                       "curve": curve_data(result.curve, run_of) if result.curve is not None else None,
                       "flexibility": result.flexibility,
                       "selection": {c.condition: c.extra["selection"] for c in result.conditions
                                     if "selection" in c.extra}}
            stopped = any(c.interrupted for c in result.conditions)
            return cache.store.add_run(kind, record, payload, name=name, summary=summary,
                                       seconds=sum(c.seconds for c in result.conditions),
                                       status="interrupted" if stopped else "finished")
        return None

    def checkpoints(self, name: str, method: str, model_id: str, fingerprint: str) -> AdapterCheckpoints | None:
        store = self.store()
        return AdapterCheckpoints(store, name, method, model_id, fingerprint, self.log) if store else None

    def record_finetune(self, adapter: Adapter, record: dict, checkpoints: AdapterCheckpoints | None) -> None:
        store = self.store()
        if store is None:
            return
        with self._safely("the fine-tune"):
            payload = {"summary": adapter.summary(), "history": adapter.history,
                       "folder": checkpoints.relative if checkpoints else None, "search": adapter.search_log}
            store.add_run("finetune", record, payload, name=adapter.name, seconds=adapter.train_seconds,
                          status="stopped" if adapter.interrupted_at is not None else "finished",
                          summary=f"{adapter.method}, {adapter.steps} steps, best validation {adapter.best_metric}")

    # -- reading back ------------------------------------------------------------------------------------
    def runs(self, kind: str | None = None, name: str | None = None, since: str | None = None) -> list[dict]:
        kinds = (kind,) if kind else LISTED_KINDS
        return self.require_store().runs(kinds, name=name, since=parse_since(since))

    def stored_run(self, run_id: int) -> tuple[str, Any]:
        """A stored run rebuilt, with the view it was shown in: ``prompt`` (a PromptResult), ``compare``,
        ``fewshot`` or ``sweep`` (a CompareResult, ``sweep`` for a few-shot k sweep), ``finetune`` (a
        TrainingRecord)."""
        store = self.require_store()
        row = store.run(run_id)
        if row is None:
            raise FtpeError(f"No run {run_id} in the run store {self.config.store}; %ftpe history lists them.")
        kind, result = row["kind"], row["result"]
        if kind == "prompt":
            return kind, prompt_from_data(result)
        if kind == "condition":
            condition = condition_from_data(result)
            return "compare", CompareResult([condition], [""] * condition.n, title=condition.condition)
        if kind == "finetune":
            return kind, TrainingRecord(row["name"] or "", result["summary"], result["history"])
        read: dict[int, Any] = {}

        def condition(run: int):  # a flat condition of a curve is one run at every size: read it once
            if run not in read:
                read[run] = condition_from_data(store.run(run)["result"])
            return read[run]

        conditions = [condition(i) for i in result["conditions"]]
        for item in conditions:  # chosen on --train after the condition was stored: kept with the comparison
            if item.condition in (result.get("selection") or {}):
                item.extra["selection"] = result["selection"][item.condition]
        view = "sweep" if kind == "fewshot" and result.get("sweep") else kind
        curve = curve_from_data(result["curve"], condition) if result.get("curve") else None
        return view, CompareResult(conditions, result["eval_texts"], title=result["title"],
                                   search_log=result.get("search_log"), model_params=result.get("model_params", 0),
                                   curve=curve, flexibility=result.get("flexibility"))

    # -- adapters on disk ------------------------------------------------------------------------------
    def stored_adapters(self, fingerprint: str) -> list[dict]:
        store = self.store()
        if store is None:
            return []
        rows = [_with_progress(store, row) for row in store.adapters(fingerprint)]
        return [{"name": row["name"], "method": row["method"], "status": adapter_status(row),
                 "best_val_accuracy": row["best_metric"], "folder": row["folder"], "updated": row["updated"]}
                for row in rows]

    def load_stored_adapter(self, name: str, fingerprint: str, device: str) -> Adapter | None:
        """Adapter ``name`` of this base from the store folder, or None when the store has none of that name."""
        store = self.store()
        row = next((r for r in store.adapters(fingerprint) if r["name"] == name), None) if store else None
        if row is None:
            return None
        status = adapter_status(_with_progress(store, row))
        if not (store.folder / row["folder"] / META).is_file():
            raise FtpeError(f"Adapter {name!r} in the run store has no weights on disk ({status}, before its first "
                            "validation). Train it again with %%finetune.")
        adapter = load_adapter(store.folder / row["folder"], name, device, fingerprint)
        self.log(f"Loaded adapter {name!r} from the run store ({status}).")
        return adapter

    def stored_reference(self, name: str, fingerprint: str) -> Adapter | None:
        """Adapter ``name`` of this base as its folder describes it, weights unread (see ``describe_adapter``):
        enough for a cache key. None when the store has no such adapter or its folder cannot vouch for it."""
        store = self.store()
        row = next((r for r in store.adapters(fingerprint) if r["name"] == name), None) if store else None
        return describe_adapter(store.folder / row["folder"], name) if row is not None else None

    # -- what loading given weights produced ----------------------------------------------------------
    def keep_load(self, signature: str, environment: dict, parameters: int) -> None:
        store = self.store(quiet=True)
        if store is not None:
            with self._safely("the model's fingerprint"):
                store.put_load(signature, {k: v for k, v in environment.items() if k != "versions"}, parameters)

    def load_of(self, signature: str) -> dict | None:
        store = self.store(quiet=True)
        if store is None:
            return None
        try:
            return store.load_of(signature)
        except sqlite3.Error:
            return None

    def delete_stored(self, name: str, fingerprint: str) -> str | None:
        """Remove adapter ``name`` of this base from disk and from the store; returns the folder removed."""
        store = self.store()
        row = next((r for r in store.adapters(fingerprint) if r["name"] == name), None) if store else None
        if row is None:
            return None
        remove_folder(store, row["folder"])
        store.delete_adapter(fingerprint, name)
        return str(Path(self.config.store).parent / row["folder"])  # as the user named the store: no machine path

    # -- few-shot pool embeddings ----------------------------------------------------------------------
    def embeddings(self, model: str, texts: list[str]) -> dict[str, np.ndarray]:
        store = self.store()
        if store is None or not texts:
            return {}
        with self._safely("embeddings"):
            found = store.embeddings(model, [text_hash(text) for text in texts])
            return {text: found[text_hash(text)] for text in texts if text_hash(text) in found}
        return {}

    def keep_embeddings(self, model: str, vectors: dict[str, np.ndarray]) -> None:
        store = self.store()
        if store is not None and vectors:
            with self._safely("embeddings"):
                store.add_embeddings(model, {text_hash(text): vector for text, vector in vectors.items()})

    # -- MLflow ----------------------------------------------------------------------------------------
    def tracker(self):
        """The tracker for ``Ftpe.mlflow_uri``, or None: a server that cannot be reached is said once, in one
        line with its credentials masked, and tracking is off for that URI until the setting changes."""
        uri = self.config.mlflow_uri
        if not uri:
            return None
        if self._tracker is None or self._tracker[0] != uri:
            from .mlflow_tracking import MlflowTracker

            self._tracker = (uri, None)  # tried once: a failure is not retried at every cell
            try:
                self._tracker = (uri, MlflowTracker(uri))
            except FtpeError as error:
                self._say_once(str(error))
            except (Exception, KeyboardInterrupt) as error:  # noqa: BLE001 - an unreachable or broken server
                self._skip_tracking(uri, error)
        return self._tracker[1]

    def _skip_tracking(self, uri: str, error: BaseException, what: str = "runs") -> None:
        self._tracker = (uri, None)
        reason = "stopped" if isinstance(error, KeyboardInterrupt) else \
            (str(error).strip().splitlines() or [type(error).__name__])[0][:120]
        self._say_once(mask_credentials(f"MLflow at {uri} could not log {what} ({reason}); tracking is off for "
                                        "this session (set Ftpe.mlflow_uri again to retry). Results are kept here."))

    def track(self, what: str, call: Callable[[Any], Any]) -> None:
        """Log one run to MLflow; a failure or the stop button costs the log, never the result."""
        tracker = self.tracker()
        if tracker is None:
            return
        from .mlflow_tracking import failing_fast

        try:
            with failing_fast():
                call(tracker)
        except (Exception, KeyboardInterrupt) as error:  # noqa: BLE001 - MLflow failing must not cost the result
            self._skip_tracking(self.config.mlflow_uri, error, what)
