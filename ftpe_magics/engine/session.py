"""The one model session a notebook shares between cells: a facade over the workbench and its workflows.

The state (the loaded model, its adapters, the runs, the recorder) and the services every workflow uses live
in :class:`~.workbench.Workbench`; each workflow is a module of :mod:`.workflows`. ``Session`` adds the public
calls, each one line of delegation plus its options, so the same work runs from the magics, plain Python
(``Session().prompt(...)``), tests, benchmarks and worker processes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .adapters.files import load_adapter, save_adapter
from .adapters.registry import Adapter
from .evaluation.comparison import CompareResult
from .finetune.observers import TrainingObserver
from .finetune.options import FinetuneOptions, LaunchOptions
from .model.loading import display_path
from .options import CompareOptions, CurveOptions, DataOptions, EvalOptions, FewShotOptions, spread_keywords
from .prompting.prompt_result import PromptResult
from .workbench import Workbench
from .workflows import tables
from .workflows.compare import run_compare
from .workflows.fewshot import run_fewshot
from .workflows.finetune import run_finetune
from .workflows.judge_pairs import judge_pairwise
from .workflows.prompt import run_prompt


class Session(Workbench):
    """A loaded model and tokenizer, its adapters, and the runs made with them: every feature as a method."""

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

    def save_adapter(self, name: str, path: str) -> str:
        """Write adapter ``name`` to the folder ``path`` and return it. Only a new folder, an empty one or an
        earlier save of ours is written (and that replacement is said); anything else is refused, never moved."""
        folder, replaced = save_adapter(self.adapters.require(name), path)
        if replaced:
            self.log(f"Replaced the adapter saved in {display_path(folder)} before.")
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
            self.log(f"Replaced the export in {display_path(folder)} before.")
        return str(folder)

    def load_adapter(self, path: str, name: str | None = None) -> Adapter:
        """Read a saved adapter; one that does not fit the loaded model is refused here, not at first use."""
        self.require_model()
        adapter = load_adapter(path, name or Path(path).expanduser().name, self.device, self.loaded_model.fingerprint)
        self.check_fits(adapter, path)
        self.keep_adapter(adapter)
        return adapter

    # -- tables and stored runs ----------------------------------------------------------------------
    def adapters_table(self):
        """Adapters in the session, then those of the loaded base kept in the run store (with their status)."""
        return tables.adapters_table(self)

    def history_table(self, kind: str | None = None, name: str | None = None, since: str | None = None):
        """Runs of the store, newest first (every kernel's); with the store off, this session's prompts."""
        return tables.history_table(self, kind, name, since)

    def show(self, run_id: int) -> Any:
        """A stored run's result, rebuilt as it was shown: PromptResult, CompareResult or TrainingRecord."""
        return self.stored_run(run_id)[1]

    def stored_run(self, run_id: int) -> tuple[str, Any]:
        """The view a stored run was shown in (prompt, compare, fewshot, sweep, finetune) and its result."""
        return self.recorder.stored_run(run_id)

    # -- the workflows -------------------------------------------------------------------------------
    def prompt(self, template: str, namespace: Mapping[str, Any] | None = None, over: Any = None,
               name: str | None = None, stream: bool = False, **settings: Any) -> PromptResult:
        """Fill ``template`` (per row of ``over`` if given) and generate; a ``name`` keeps it for re-run diffs."""
        return run_prompt(self, template, namespace, over, name, stream, **settings)

    def fewshot(self, body: str, train: Any, eval: Any, *, name: str | None = None,
                fewshot: FewShotOptions | None = None, data: DataOptions | None = None,
                evaluation: EvalOptions | None = None, namespace: Mapping[str, Any] | None = None,
                **options: Any) -> CompareResult:
        """Score k-shot prompts built from ``train`` on ``eval``; the named config is kept for %%compare.

        Options come as option objects or as keywords (``k=4, select="balanced", limit=100``).
        With ``metric`` the task is generation: the answer is generated after the prompt and scored.
        """
        fewshot, data, evaluation = spread_keywords(options, fewshot or FewShotOptions(), data or DataOptions(),
                                                    evaluation or EvalOptions())
        return run_fewshot(self, body, train, eval, name, fewshot, data, evaluation, namespace)

    def compare(self, body: str, eval: Any, *, train: Any = None, compare: CompareOptions | None = None,
                data: DataOptions | None = None, evaluation: EvalOptions | None = None,
                curve: CurveOptions | None = None, namespace: Mapping[str, Any] | None = None,
                **options: Any) -> CompareResult:
        """Run every condition of ``body`` (one per line) on the same eval set, in one table; with ``train``, the
        conditions that learn from data run on it (at each of ``sizes``: a learning curve, see
        :mod:`.evaluation.learning_curve`)."""
        compare, data, evaluation, curve = spread_keywords(options, compare or CompareOptions(), data or DataOptions(),
                                                           evaluation or EvalOptions(), curve or CurveOptions())
        return run_compare(self, body, eval, train, compare, data, evaluation, curve, namespace)

    def judge_pairwise(self, result: CompareResult, first: str, second: str, template: str | None = None) -> dict:
        """Which of two generation conditions the base model prefers, row by row, asked with the answers in both
        orders (a preference that flips with the order is counted as position bias, not as a win)."""
        return judge_pairwise(self, result, first, second, template)

    def finetune(self, body: str, train: Any, name: str, eval: Any = None, *,
                 finetune: FinetuneOptions | None = None, data: DataOptions | None = None,
                 launch: LaunchOptions | None = None, observers: Sequence[TrainingObserver] = (),
                 **options: Any) -> Adapter:
        """Train adapter ``name`` on ``train`` with the example template ``body``; the base model stays intact.

        Options come as a :class:`FinetuneOptions` or as keywords (``method="lora", epochs=2``, ``nproc=2`` to
        train in worker processes); ``observers`` hear of every step, log, validation and the end (the live view
        is one).
        """
        finetune, data, launch = spread_keywords(options, finetune or FinetuneOptions(), data or DataOptions(),
                                                 launch or LaunchOptions())
        return run_finetune(self, body, train, name, eval, finetune, data, launch, observers)


_SESSION: Session | None = None


def get_session() -> Session:
    """The session the magics use; plain Python code can share it."""
    global _SESSION
    if _SESSION is None:
        _SESSION = Session()
    return _SESSION
