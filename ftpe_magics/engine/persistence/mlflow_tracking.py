"""MLflow for teams (the optional extra ``ftpe_magics[mlflow]``): runs go to a shared tracking server.

With ``Ftpe.mlflow_uri`` set, every fine-tune is an MLflow run (its options as parameters, its
curves as per-step metrics, the adapter folder as an artifact) and every ``%%compare`` is a parent
run with one child run per condition. ``MlflowClient`` is used directly, never MLflow's global
"active run", so logging here cannot disturb a user's own ``mlflow.start_run()`` in the notebook.
A tracking server that fails is one line; the run it was logging is kept in the session anyway.
"""

from __future__ import annotations

import math
import os
import socket
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import FtpeError, mask_credentials

EXPERIMENT = "ftpe_magics"
_BATCH = 900  # MLflow takes up to 1000 metrics and 100 parameters per log_batch call
REACH_TIMEOUT_S = 3.0  # how long the one reachability check of a tracking server may take
# MLflow retries a failing HTTP request for minutes by default; here a request fails fast and tracking is skipped
_FAST_FAILURE = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}


def unreachable(uri: str, timeout: float = REACH_TIMEOUT_S) -> str | None:
    """Why an ``http(s)://`` tracking server cannot be reached (one TCP connect, ``timeout`` seconds), or None.

    Checked once per URI before any MLflow call, so a server that is down costs seconds, not MLflow's minutes
    of retries at every cell; other schemes (``sqlite:``, ``file:``, a folder) are local and not checked."""
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https"):
        return None
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return "its port is not a number"
    try:
        with socket.create_connection((parts.hostname or "localhost", port), timeout=timeout):
            return None
    except OSError as error:
        return error.strerror or type(error).__name__


@contextmanager
def failing_fast() -> Iterator[None]:
    """MLflow's HTTP retries off and a short timeout, only around our own calls (a user's settings win)."""
    added = {key: value for key, value in _FAST_FAILURE.items() if key not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


def _client(uri: str):
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise FtpeError("Ftpe.mlflow_uri is set but MLflow is not installed: pip install 'ftpe_magics[mlflow]' "
                        "(or %config Ftpe.mlflow_uri = \"\" to stop logging to MLflow).") from None
    return MlflowClient(tracking_uri=uri)


class MlflowTracker:
    """Logs fine-tunes and comparisons to one tracking URI, in the experiment ``ftpe_magics``."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.client = _client(uri)
        why = unreachable(uri)
        if why is not None:
            raise ConnectionError(f"{mask_credentials(uri)} is not reachable: {why}")
        with failing_fast():
            found = self.client.get_experiment_by_name(EXPERIMENT)
            self.experiment_id = found.experiment_id if found else self.client.create_experiment(EXPERIMENT)

    def _log(self, run_id: str, params: dict[str, Any] = (), metrics: Iterable[tuple[str, float, int]] = ()) -> None:
        from mlflow.entities import Metric, Param

        now = int(time.time() * 1000)
        param_list = [Param(key, str(value)[:6000]) for key, value in dict(params).items() if value is not None]
        metric_list = [Metric(key, float(value), now, step) for key, value, step in metrics
                       if value is not None and not math.isnan(float(value))]
        for start in range(0, len(param_list), 100):
            self.client.log_batch(run_id, params=param_list[start:start + 100])
        for start in range(0, len(metric_list), _BATCH):
            self.client.log_batch(run_id, metrics=metric_list[start:start + _BATCH])

    def finetune(self, adapter: Any, options: dict[str, Any], model_id: str, folder: Path | None) -> str:
        """One run per fine-tune; returns its MLflow run id."""
        run = self.client.create_run(self.experiment_id, run_name=adapter.name,
                                     tags={"ftpe.kind": "finetune", "ftpe.model": model_id})
        run_id = run.info.run_id
        curves = [(key, record[key], record["step"]) for record in adapter.history
                  for key in ("loss", "eval_loss", "eval_accuracy", "learning_rate") if key in record]
        finals = [("train_seconds", adapter.train_seconds, adapter.steps), ("trainable_params",
                  adapter.trainable_params, adapter.steps), ("best_val_accuracy", adapter.best_metric, adapter.steps)]
        self._log(run_id, {"method": adapter.method, "model": model_id, **options}, curves + finals)
        if folder is not None:
            self.client.log_artifacts(run_id, str(folder), "adapter")
        else:  # no run store: write the adapter to a temporary folder just for the upload
            from ..adapters.files import save_adapter

            with tempfile.TemporaryDirectory(prefix="ftpe-mlflow-") as staging:
                save_adapter(adapter, Path(staging) / adapter.name)
                self.client.log_artifacts(run_id, str(Path(staging) / adapter.name), "adapter")
        status = "KILLED" if adapter.interrupted_at is not None else "FINISHED"
        self.client.set_terminated(run_id, status=status)
        return run_id

    def compare(self, result: Any, settings: dict[str, Any], model_id: str) -> str:
        """A parent run for the comparison, one child run per condition; returns the parent's id."""
        parent = self.client.create_run(self.experiment_id, run_name=result.title,
                                        tags={"ftpe.kind": result.title, "ftpe.model": model_id})
        parent_id = parent.info.run_id
        self._log(parent_id, {"model": model_id, "n": len(result.eval_texts), **settings})
        for condition in result.conditions:
            child = self.client.create_run(self.experiment_id, run_name=condition.condition,
                                           tags={"mlflow.parentRunId": parent_id, "ftpe.kind": condition.kind})
            low, high = condition.interval
            self._log(child.info.run_id, {"kind": condition.kind, "spec": condition.spec},
                      [("accuracy", condition.accuracy, 0), ("accuracy_low", low, 0), ("accuracy_high", high, 0),
                       ("latency_ms", condition.latency_ms, 0), ("prompt_tokens", condition.mean_prompt_tokens, 0),
                       ("train_seconds", condition.train_seconds, 0)])
            self.client.set_terminated(child.info.run_id, status="KILLED" if condition.interrupted else "FINISHED")
        self.client.set_terminated(parent_id)
        return parent_id
