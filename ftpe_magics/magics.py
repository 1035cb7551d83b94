"""The IPython magics: parse a cell into option objects, call the engine's :class:`Session`, display.

Options are declared once, in the engine's dataclasses; ``arguments.option_arguments`` turns them
into ``magic_arguments`` and ``arguments.build`` turns a parsed line back into them. A problem the
user can fix is an :class:`FtpeError`, shown as IPython's one-line ``UsageError``.
"""

from __future__ import annotations

import functools
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from IPython.display import display

from .arguments import build, dataset_argument, option_arguments, parse
from .display.curves import search_trials_html
from .display.html import compare_sections, fewshot_html, key_value_html
from .display.training_view import TrainingView
from .display.widgets import display_tabs
from .engine.errors import FtpeError, mask_credentials
from .engine.finetune.options import FinetuneOptions, LaunchOptions
from .engine.inference.generation import GenerationSettings
from .engine.model.load_options import LoadOptions
from .engine.model.loading import display_path
from .engine.options import CompareOptions, CurveOptions, DataOptions, EvalOptions, FewShotOptions, option
from .engine.persistence.store import RUN_KINDS
from .engine.session import Session

LINE_MAGICS = ("ftpe",)
CELL_MAGICS = ("prompt", "fewshot", "compare", "finetune")
ACTIONS = ("load", "status", "unload", "history", "show", "adapters", "use", "save", "export", "load-adapter",
           "delete", "debug")


@dataclass
class ActionOptions:
    """``%ftpe``'s options beside the load options: what history lists, where show stores, how export writes."""

    merged: bool = option(False, "For export: merge the adapter into a copy of the base (LoRA, IA3; a full "
                                 "fine-tune is one already).")
    name: str | None = option(None, "For load-adapter: the name in the session (default: folder name); for history: "
                                    "only runs of this name.")
    kind: str | None = option(None, "For history: only runs of this kind.", choices=RUN_KINDS)
    since: str | None = option(None, "For history: only runs since a date (2026-11-22, 2026-11-22 14:00) or an age "
                                     "(30m, 12h, 3d, 2w).", nargs="+")
    out: str | None = option(None, "For show: store the rebuilt result in this variable.", metavar="VAR")


def user_errors(method: Callable) -> Callable:
    """Show an :class:`FtpeError` as IPython's one-line UsageError instead of a traceback; any other
    exception is one line too, its traceback kept for ``%ftpe debug``."""

    @functools.wraps(method)
    def wrapper(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except FtpeError as error:
            raise UsageError(mask_credentials(str(error))) from None
        except UsageError as error:  # argparse's: a typo in the options, said as IPython says it
            raise UsageError(mask_credentials(str(error))) from None
        except Exception as error:  # noqa: BLE001 - a bug or a library failure: one line, traceback on request
            self.last_traceback = mask_credentials(traceback.format_exc())
            first = mask_credentials((str(error).strip().splitlines() or [""])[0][:160])
            raise UsageError(f"{type(error).__name__}: {first} (unexpected; the model stays loaded, and "
                             "%ftpe debug shows the traceback)") from None

    return wrapper


def show_table(table: Any, empty: str) -> None:
    """A table whole in a terminal too (pandas' repr would hide columns behind '...'), as HTML in a notebook."""
    if not len(table):
        display(empty)
        return
    display({"text/plain": table.to_string(index=False), "text/html": table.to_html(index=False)}, raw=True)


def show_key_values(title: str, rows: list[tuple[str, Any]]) -> None:
    width = max(len(key) for key, _ in rows)
    text = "\n".join([title] + [f"  {key:<{width}}  {value}" for key, value in rows])
    display({"text/plain": text, "text/html": key_value_html(title, rows)}, raw=True)


@magics_class
class FtpeMagics(Magics):
    def __init__(self, shell, session: Session) -> None:
        super().__init__(shell)
        self.session = session
        self.last_traceback: str | None = None  # of the last unexpected error, for %ftpe debug

    def _variable(self, name: str, option: str, path_ok: bool = False) -> Any:
        if name in self.shell.user_ns:
            return self.shell.user_ns[name]
        if path_ok and Path(name).expanduser().is_file():
            return name
        raise FtpeError(f"{option}: no variable named {name!r} in the notebook"
                        + (" and no such file." if path_ok else ".") + " Define it first.")

    def _store(self, name: str | None, value: Any) -> None:
        if name:
            self.shell.user_ns[name] = value

    @magic_arguments()
    @argument("action", choices=ACTIONS,
              help="load [MODEL]: load a model (hub id, folder or .gguf; none = the default); "
                   "status: model, device, memory; unload: free the model; history: the runs of the run store "
                   "(this kernel's and earlier ones); show RUN: redisplay a stored run; adapters: list adapters "
                   "(the session's and the store's); use NAME|base: switch the active model; save NAME PATH: write "
                   "an adapter; export NAME PATH --merged: a standalone transformers model with the adapter merged in; "
                   "load-adapter PATH: read one; delete NAME: forget one (and remove it from the store's "
                   "folder); debug: the traceback of the last unexpected error.")
    @argument("model", nargs="?", default=None,
              help="For load: hub id, local folder or .gguf file; for use/save/delete: adapter name; "
                   "for load-adapter: its folder; for show: the run number.")
    @argument("path", nargs="?", default=None, help="For save and export: the folder to write.")
    @option_arguments(ActionOptions, LoadOptions)
    @line_magic
    @user_errors
    def ftpe(self, line: str) -> None:
        """Manage the shared model session: load, status, unload, history, adapters."""
        args = parse(self.ftpe, line)
        args.load, args.options = build(LoadOptions, args), build(ActionOptions, args)
        action = {"load": self._load, "status": self._status, "unload": self._unload, "history": self._history,
                  "show": self._show,
                  "adapters": self._adapters, "load-adapter": self._load_adapter, "use": self._use,
                  "save": self._save, "export": self._export, "delete": self._delete,
                  "debug": self._debug}[args.action]
        action(args)

    def _load(self, args) -> None:
        session = self.session
        session.load(args.model, args.load)
        placed = "" if not (args.load.quantize or args.load.device_map) else \
            f", {session.loaded_model.placement.describe()}"
        print(f"Loaded {session.source.label} on {session.device}{placed} "
              f"({session.parameter_count():,} parameters, {session.load_seconds:.1f}s).")

    def _status(self, args) -> None:
        show_key_values("ftpe session", list(self.session.status().items()))

    def _unload(self, args) -> None:
        if not self.session.loaded:
            print("No model is loaded.")
        self.session.unload()

    def _history(self, args) -> None:
        options = args.options
        show_table(self.session.history_table(options.kind, options.name, options.since), "No runs yet.")

    def _show(self, args) -> None:
        if not args.model or not args.model.isdigit():
            raise FtpeError("Usage: %ftpe show RUN [--out VAR], RUN being a number from %ftpe history.")
        view, result = self.session.stored_run(int(args.model))
        self._store(args.options.out, result)
        if view == "finetune":
            view = TrainingView(live=False)
            view.records, view.total_steps = result.history, result.summary_row.get("steps", 0)
            view.current_step = view.total_steps
            display({"text/plain": str(result.summary_row), "text/html": view.final_html(result)}, raw=True)
        elif view in ("fewshot", "sweep"):
            display({"text/plain": str(result), "text/html": fewshot_html(result, view == "sweep")}, raw=True)
        elif view == "compare":
            display_tabs(compare_sections(result), str(result))
        else:
            display(result)

    def _adapters(self, args) -> None:
        show_table(self.session.adapters_table(), "No adapters yet: train one with %%finetune.")

    def _debug(self, args) -> None:
        print(self.last_traceback or "No unexpected error in this session.")

    def _load_adapter(self, args) -> None:
        if not args.model:
            raise FtpeError("Usage: %ftpe load-adapter PATH [--name NAME]")
        adapter = self.session.load_adapter(args.model, args.options.name)
        print(f"Loaded adapter {adapter.name!r} ({adapter.method}); %ftpe use {adapter.name} to activate it.")

    @staticmethod
    def _adapter_name(args) -> str:
        if not args.model:
            raise FtpeError(f"Usage: %ftpe {args.action} NAME" + (" PATH" if args.action == "save" else ""))
        return args.model

    def _use(self, args) -> None:
        name = self._adapter_name(args)
        self.session.use(name)
        print(f"Active model: {'base' if name == 'base' else 'adapter ' + repr(name)}.")

    def _save(self, args) -> None:
        name = self._adapter_name(args)
        if not args.path:
            raise FtpeError("Usage: %ftpe save NAME PATH")
        print(f"Saved adapter {name!r} to {display_path(self.session.save_adapter(name, args.path))}.")

    def _export(self, args) -> None:
        name = self._adapter_name(args)
        if not args.path or not args.options.merged:
            raise FtpeError("Usage: %ftpe export NAME PATH --merged (a standalone model; %ftpe save NAME PATH writes "
                            "the adapter alone).")
        folder = display_path(self.session.export(name, args.path, merged=True))
        print(f"Exported {name!r} merged into the base to {folder}: AutoModelForCausalLM.from_pretrained loads it.")

    def _delete(self, args) -> None:
        name = self._adapter_name(args)
        print(f"Deleted adapter {name!r} from {' and '.join(self.session.delete_adapter(name))}.")

    @magic_arguments()
    @argument("--over", metavar="VAR", help="Run once per row of VAR (list of strings -> {item}, list of dicts, "
                                            "DataFrame -> its columns); batched.")
    @argument("--out", metavar="VAR", help="Store the result object in this notebook variable.")
    @argument("--name", help="Name this prompt; a re-run with the same name shows a diff against the last one.")
    @argument("--stream", action="store_true", help="Print tokens as they are generated (single prompt).")
    @option_arguments(GenerationSettings)
    @cell_magic
    @user_errors
    def prompt(self, line: str, cell: str) -> None:
        """Fill the cell as a prompt template from notebook variables and generate.

        ``{name}`` is replaced by the variable's value; ``{{`` and ``}}`` are literal braces; other
        braces (JSON, code) are left as they are. Templates never evaluate code.
        """
        args = parse(self.prompt, line)
        settings = build(GenerationSettings, args)
        over = self._variable(args.over, "--over") if args.over else None
        result = self.session.prompt(cell.strip("\n"), self.shell.user_ns, over=over, name=args.name,
                                     stream=args.stream, **settings.as_dict())
        self._store(args.out, result)
        if args.stream:
            print()
        display(result)

    @magic_arguments()
    @dataset_argument("--train", "Training pool", required=True)
    @dataset_argument("--eval", "Held-out set", required=True)
    @argument("--name", default=None, help="Keep this configuration under NAME for %%%%compare.")
    @argument("--out", metavar="VAR", help="Store the result (like %%%%compare's) in this variable.")
    @option_arguments(FewShotOptions, DataOptions, EvalOptions)
    @cell_magic
    @user_errors
    def fewshot(self, line: str, cell: str) -> None:
        """Score a k-shot prompt on a held-out set.

        The cell is a template for one example, e.g. ``Review: {text}\nSentiment: {label}``, optionally
        preceded by instructions (paragraphs above the last one). The label is scored where
        ``{label}`` stands.
        """
        args = parse(self.fewshot, line)
        fewshot = build(FewShotOptions, args)
        result = self.session.fewshot(
            cell, self._variable(args.train, "--train", path_ok=True), self._variable(args.eval, "--eval", True),
            name=args.name, fewshot=fewshot, data=build(DataOptions, args), evaluation=build(EvalOptions, args),
            namespace=self.shell.user_ns)
        self._store(args.out, result)
        display({"text/plain": str(result), "text/html": fewshot_html(result, fewshot.sweep is not None)}, raw=True)

    @magic_arguments()
    @dataset_argument("--eval", "Held-out set", required=True)
    @dataset_argument("--train", "Labelled pool for the conditions that learn from data (fewshot draws from it, "
                                 "finetune trains on it)", required=False)
    @argument("--out", metavar="VAR", help="Store the result object in this variable.")
    @option_arguments(CurveOptions, CompareOptions, DataOptions, EvalOptions)
    @cell_magic
    @user_errors
    def compare(self, line: str, cell: str) -> None:
        """Run several conditions on the same held-out set and show them in one table.

        One condition per line, ``LABEL: KIND SPEC``; kinds: ``prompt TEMPLATE``, ``cot TEMPLATE``,
        ``fewshot NAME [key=value ...]``, ``finetune METHOD [key=value ...] TEMPLATE`` (with --train),
        ``adapter NAME``, ``base [TEMPLATE]``. ``\n`` in a template is a newline. With ``--train`` and
        ``--sizes``, a learning curve: every condition at each training-set size.
        """
        args = parse(self.compare, line)
        train = self._variable(args.train, "--train", path_ok=True) if args.train else None
        result = self.session.compare(cell, self._variable(args.eval, "--eval", path_ok=True), train=train,
                                      compare=build(CompareOptions, args), data=build(DataOptions, args),
                                      evaluation=build(EvalOptions, args), curve=build(CurveOptions, args),
                                      namespace=self.shell.user_ns)
        self._store(args.out, result)
        display_tabs(compare_sections(result), str(result))

    @magic_arguments()
    @dataset_argument("--train", "Training set", required=True)
    @dataset_argument("--eval", "Validation set (or use --val-split)", required=False)
    @argument("--name", required=True, help="Name of the resulting adapter.")
    @option_arguments(FinetuneOptions, LaunchOptions, DataOptions)
    @cell_magic
    @user_errors
    def finetune(self, line: str, cell: str) -> None:
        """Fine-tune the session's model on a template filled from a training set.

        The cell is the same kind of template as %%fewshot, e.g. ``Review: {text}\nSentiment: {label}``.
        The result is a named adapter: ``%ftpe use NAME`` activates it, ``adapter NAME`` adds it to
        %%compare. The kernel's stop button ends training at the next step and keeps the adapter.
        """
        args = parse(self.finetune, line)
        options = build(FinetuneOptions, args)
        # a probe is one logistic regression, not a run of steps: its report is the line below, not the live view
        views = [] if options.method == "probe" else [TrainingView(references=self.session.runs.prompting_scores,
                                                                   live=True)]
        adapter = self.session.finetune(
            cell, self._variable(args.train, "--train", path_ok=True), args.name,
            eval=self._variable(args.eval, "--eval", path_ok=True) if args.eval else None,
            finetune=options, data=build(DataOptions, args), launch=build(LaunchOptions, args), observers=views)
        if adapter.search_log:
            display({"text/plain": f"{len(adapter.search_log)} trials", "text/html": search_trials_html(
                adapter.search_log)}, raw=True)
        status = (f"interrupted at step {adapter.interrupted_at}; kept as of that step"
                  if adapter.interrupted_at is not None else f"{adapter.steps} steps")
        if adapter.method == "probe":
            accuracy = "" if adapter.best_metric is None else f", validation accuracy {adapter.best_metric:.3f}"
            status = f"logistic regression on frozen features, {adapter.trainable_params:,} parameters{accuracy}"
        print(f"Adapter {adapter.name!r} ({adapter.method}, {status}, {adapter.train_seconds:.0f}s): "
              f"%ftpe use {adapter.name} to activate it, or 'adapter {adapter.name}' in %%compare.")
