"""The IPython magics: argument parsing and display only; the work is done by :class:`Session`."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.display import display

from .config import DEVICES, DTYPES
from .errors import FtpeError
from .report import fewshot_html
from .scoring import NORMALISATIONS
from .session import Session
from .widgets import display_tabs

LINE_MAGICS = ("ftpe",)
CELL_MAGICS = ("prompt", "fewshot", "compare", "finetune")


def data_arguments(func: Callable) -> Callable:
    """Options shared by the magics that read a labelled dataset."""
    for decorator in reversed([
        argument("--input-col", default="text", help="Column holding the input text (default: text)."),
        argument("--label-col", default="label", help="Column holding the label or reference (default: label)."),
        argument("--labels", default=None, help="The label set, comma-separated (default: the labels seen)."),
        argument("--label-names", default=None, help="Label values as words, e.g. 0=negative,1=positive."),
        argument("--limit", type=int, default=None, help="Score only the first N eval examples."),
        argument("--norm", choices=NORMALISATIONS, default="none",
                 help="Length normalisation of label log-likelihoods: none, tokens or chars."),
        argument("--batch-size", type=int, default=None, help="Examples per forward pass (default: Ftpe.batch_size)."),
        argument("--max-new-tokens", type=int, default=None, help="Tokens to generate for generation conditions."),
    ]):
        func = decorator(func)
    return func


def parse(magic: Callable, line: str):
    """``parse_argstring`` keeps the quotes around a quoted value (it splits like Windows' shell); strip them."""
    args = parse_argstring(magic, line)
    for key, value in vars(args).items():
        if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            setattr(args, key, value[1:-1])
    return args


def user_errors(method: Callable) -> Callable:
    """Show an :class:`FtpeError` as IPython's one-line UsageError instead of a traceback."""

    @functools.wraps(method)
    def wrapper(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except FtpeError as error:
            raise UsageError(str(error)) from None

    return wrapper


@magics_class
class FtpeMagics(Magics):
    def __init__(self, shell, session: Session) -> None:
        super().__init__(shell)
        self.session = session

    def _variable(self, name: str, option: str, path_ok: bool = False) -> Any:
        if name in self.shell.user_ns:
            return self.shell.user_ns[name]
        if path_ok and Path(name).expanduser().is_file():
            return name
        raise FtpeError(f"{option}: no variable named {name!r} in the notebook"
                        + (" and no such file." if path_ok else ".") + " Define it first.")

    def _data_options(self, args) -> dict:
        return {"input_col": args.input_col, "label_col": args.label_col, "labels": args.labels,
                "label_names": args.label_names, "limit": args.limit, "norm": args.norm,
                "batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens,
                "namespace": self.shell.user_ns}

    @magic_arguments()
    @argument("action", choices=["load", "status", "unload", "history", "adapters", "use", "save", "load-adapter",
                                 "delete"],
              help="load [MODEL]: load a model (hub id, folder or .gguf; none = the default); "
                   "status: model, device, memory; unload: free the model; history: runs of this session; "
                   "adapters: list adapters; use NAME|base: switch the active model; save NAME PATH: write an "
                   "adapter; load-adapter PATH: read one; delete NAME: forget one.")
    @argument("model", nargs="?", default=None,
              help="For load: hub id, local folder or .gguf file; for use/save/delete: adapter name; "
                   "for load-adapter: its folder.")
    @argument("path", nargs="?", default=None, help="For save: the folder to write.")
    @argument("--name", default=None, help="For load-adapter: the name in the session (default: folder name).")
    @argument("--device", choices=DEVICES, default=None, help="Where to load the model (default: Ftpe.device).")
    @argument("--dtype", choices=DTYPES, default=None, help="Weight dtype (default: Ftpe.dtype).")
    @argument("--trust-remote-code", action="store_true",
              help="Allow model code from the hub to run (off unless you trust the source).")
    @line_magic
    @user_errors
    def ftpe(self, line: str) -> None:
        """Manage the shared model session: load, status, unload, history."""
        args = parse(self.ftpe, line)
        session = self.session
        if args.action == "load":
            session.load(args.model, device=args.device, dtype=args.dtype, trust_remote_code=args.trust_remote_code)
            print(f"Loaded {session.source.label} on {session.device} "
                  f"({session.parameter_count():,} parameters, {session.load_seconds:.1f}s).")
        elif args.action == "status":
            display(session.status())
        elif args.action == "unload":
            if not session.loaded:
                print("No model is loaded.")
            session.unload()
        elif args.action == "history":
            display(session.history_table() if session.history else "No runs yet.")
        elif args.action == "adapters":
            display(session.adapters_table() if session.adapters else "No adapters yet: train one with %%finetune.")
        elif args.action == "load-adapter":
            if not args.model:
                raise FtpeError("Usage: %ftpe load-adapter PATH [--name NAME]")
            adapter = session.load_adapter(args.model, args.name)
            print(f"Loaded adapter {adapter.name!r} ({adapter.method}); %ftpe use {adapter.name} to activate it.")
        else:
            self._adapter_action(args)

    def _adapter_action(self, args) -> None:
        session = self.session
        if not args.model:
            raise FtpeError(f"Usage: %ftpe {args.action} NAME" + (" PATH" if args.action == "save" else ""))
        if args.action == "use":
            session.use(args.model)
            print(f"Active model: {'base' if args.model == 'base' else 'adapter ' + repr(args.model)}.")
        elif args.action == "save":
            if not args.path:
                raise FtpeError("Usage: %ftpe save NAME PATH")
            print(f"Saved adapter {args.model!r} to {session.save_adapter(args.model, args.path)}.")
        elif args.action == "delete":
            session.delete_adapter(args.model)
            print(f"Deleted adapter {args.model!r}.")

    @magic_arguments()
    @argument("--over", metavar="VAR", help="Run once per row of VAR (list of strings -> {item}, list of dicts, "
                                            "DataFrame -> its columns); batched.")
    @argument("--out", metavar="VAR", help="Store the result object in this notebook variable.")
    @argument("--name", help="Name this prompt; a re-run with the same name shows a diff against the last one.")
    @argument("--max-new-tokens", type=int, default=None, help="Tokens to generate (default: Ftpe.max_new_tokens).")
    @argument("--temperature", type=float, default=None, help="0 = greedy (default); above 0 samples.")
    @argument("--top-p", type=float, default=None, help="Nucleus sampling threshold (with --temperature > 0).")
    @argument("--seed", type=int, default=None, help="Random seed; a sampled run without one records its own.")
    @argument("--system", default=None, help="System message for the chat template.")
    @argument("--raw", action="store_true", help="Send the text as is, without the chat template.")
    @argument("--samples", type=int, default=None, help="Samples per prompt; identical outputs are grouped.")
    @argument("--batch-size", type=int, default=None, help="Prompts per batch with --over (default: Ftpe.batch_size).")
    @argument("--stream", action="store_true", help="Print tokens as they are generated (single prompt).")
    @cell_magic
    @user_errors
    def prompt(self, line: str, cell: str) -> None:
        """Fill the cell as a prompt template from notebook variables and generate.

        ``{name}`` is replaced by the variable's value; ``{{`` and ``}}`` are literal braces; other
        braces (JSON, code) are left as they are. Templates never evaluate code.
        """
        args = parse(self.prompt, line)
        template = cell.strip("\n")
        over = self._variable(args.over, "--over") if args.over else None
        result = self.session.prompt(
            template, self.shell.user_ns, over=over, name=args.name, stream=args.stream,
            max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
            seed=args.seed, system=args.system, raw=args.raw or None, samples=args.samples,
            batch_size=args.batch_size)
        if args.out:
            self.shell.user_ns[args.out] = result
        if args.stream:
            print()
        display(result)

    @magic_arguments()
    @argument("--train", metavar="VAR", required=True, help="Training pool: a notebook variable or a file path.")
    @argument("--eval", metavar="VAR", required=True, help="Held-out set: a notebook variable or a file path.")
    @argument("--k", type=int, default=4, help="Examples in the prompt (default 4).")
    @argument("--select", choices=["random", "balanced", "similar"], default="random",
              help="random; balanced (round-robin over labels); similar (nearest by the model's own embeddings).")
    @argument("--seed", type=int, default=0, help="Seed for drawing examples.")
    @argument("--name", default=None, help="Keep this configuration under NAME for %%%%compare.")
    @argument("--out", metavar="VAR", help="Store the result (like %%%%compare's) in this variable.")
    @argument("--sweep-k", default=None, help="Comma-separated k values, e.g. 0,1,2,4,8: accuracy against k.")
    @argument("--orders", type=int, default=1, help="Score the same examples in N orders: mean and spread.")
    @argument("--allow-overlap", action="store_true",
              help="Keep training examples whose text is also in the eval set (excluded by default).")
    @argument("--metric", default=None, help="Generation task: score the generated answer with exact, contains, "
                                             "regex, f1, or a notebook function f(prediction, reference) -> float.")
    @data_arguments
    @cell_magic
    @user_errors
    def fewshot(self, line: str, cell: str) -> None:
        """Score a k-shot prompt on a held-out set.

        The cell is a template for one example, e.g. ``Review: {text}\nSentiment: {label}``, optionally
        preceded by instructions (paragraphs above the last one). The label is scored where
        ``{label}`` stands.
        """
        args = parse(self.fewshot, line)
        sweep = [int(k) for k in args.sweep_k.split(",")] if args.sweep_k else None
        result = self.session.fewshot(
            cell, self._variable(args.train, "--train", path_ok=True), self._variable(args.eval, "--eval", True),
            k=args.k, select=args.select, seed=args.seed, name=args.name, orders=args.orders, sweep_k=sweep,
            allow_overlap=args.allow_overlap, metric=args.metric, **self._data_options(args))
        if args.out:
            self.shell.user_ns[args.out] = result
        display({"text/plain": str(result), "text/html": fewshot_html(result, sweep is not None)}, raw=True)

    @magic_arguments()
    @argument("--eval", metavar="VAR", required=True, help="Held-out set: a notebook variable or a file path.")
    @argument("--samples", type=int, default=1,
              help="Samples per example for consistency (labels drawn from the model's label distribution; "
                   "generation at temperature 0.7).")
    @argument("--metric", default=None, help="Score generated text: exact, contains, regex, f1, or a notebook "
                                             "function f(prediction, reference) -> float.")
    @argument("--answer-regex", default=None, help="How chain-of-thought answers are found in the reasoning "
                                                   "(default: the last label mentioned, else label likelihood).")
    @argument("--seed", type=int, default=0, help="Seed for sampling.")
    @argument("--out", metavar="VAR", help="Store the result object in this variable.")
    @data_arguments
    @cell_magic
    @user_errors
    def compare(self, line: str, cell: str) -> None:
        """Run several conditions on the same held-out set and show them in one table.

        One condition per line, ``LABEL: KIND SPEC``; kinds: ``prompt TEMPLATE``, ``cot TEMPLATE``,
        ``fewshot NAME``. ``\n`` in a template is a newline.
        """
        args = parse(self.compare, line)
        result = self.session.compare(cell, self._variable(args.eval, "--eval", path_ok=True), samples=args.samples,
                                      metric=args.metric, answer_regex=args.answer_regex, seed=args.seed,
                                      **self._data_options(args))
        if args.out:
            self.shell.user_ns[args.out] = result
        display_tabs(result.sections(), str(result))

    @magic_arguments()
    @argument("--train", metavar="VAR", required=True, help="Training set: a notebook variable or a file path.")
    @argument("--eval", metavar="VAR", default=None, help="Validation set (or use --val-split).")
    @argument("--val-split", type=float, default=None, help="Hold out this share of --train for validation.")
    @argument("--method", choices=["lora", "full", "prompt-tuning", "ia3", "unfreeze"], default="lora",
              help="lora, full (a trained copy), prompt-tuning (soft prompt), ia3, unfreeze (gradual unfreezing).")
    @argument("--name", required=True, help="Name of the resulting adapter.")
    @argument("--epochs", type=float, default=None, help="Passes over the training set (default 3).")
    @argument("--max-steps", type=int, default=None, help="Optimizer steps (overrides --epochs).")
    @argument("--lr", type=float, default=None, help="Peak learning rate (default per method, e.g. 1e-3 for LoRA).")
    @argument("--batch-size", type=int, default=8, help="Examples per step (default 8).")
    @argument("--grad-accum", type=int, default=1, help="Gradient accumulation steps.")
    @argument("--max-len", type=int, default=256, help="Longest training sequence in tokens (prompt cut on the left).")
    @argument("--seed", type=int, default=0, help="Seed for initialisation and data order.")
    @argument("--loss", choices=["answer", "all"], default="answer", help="Loss on the answer only, or on all text.")
    @argument("--raw", action="store_true", help="Train on the raw template instead of the chat template.")
    @argument("--eval-steps", type=int, default=None, help="Validate every N steps (default: about 4 times a run).")
    @argument("--early-stopping", type=int, default=None, metavar="PATIENCE",
              help="Stop after PATIENCE validations without improvement (the best state is restored).")
    @argument("--warmup", type=float, default=0.1, help="Warm-up: a share of the steps (<1) or a step count.")
    @argument("--rank", type=int, default=8, help="LoRA rank.")
    @argument("--alpha", type=int, default=16, help="LoRA alpha.")
    @argument("--dropout", type=float, default=0.05, help="LoRA dropout.")
    @argument("--target-modules", default=None,
              help="LoRA/IA3 target modules, comma-separated or all-linear (default: chosen per architecture).")
    @argument("--virtual-tokens", type=int, default=20, help="Prompt tuning: number of virtual tokens.")
    @argument("--init-text", default=None, help="Prompt tuning: initialise the soft prompt from this text.")
    @argument("--unfreeze-groups", type=int, default=4, help="Gradual unfreezing: layer groups.")
    @argument("--unfreeze-every", type=int, default=None, help="Gradual unfreezing: steps between groups.")
    @argument("--input-col", default="text", help="Column holding the input text (default: text).")
    @argument("--label-col", default="label", help="Column holding the label (default: label).")
    @argument("--labels", default=None, help="The label set, comma-separated (default: the labels seen).")
    @argument("--label-names", default=None, help="Label values as words, e.g. 0=negative,1=positive.")
    @cell_magic
    @user_errors
    def finetune(self, line: str, cell: str) -> None:
        """Fine-tune the session's model on a template filled from a training set.

        The cell is the same kind of template as %%fewshot, e.g. ``Review: {text}\nSentiment: {label}``.
        The result is a named adapter: ``%ftpe use NAME`` activates it, ``adapter NAME`` adds it to
        %%compare. The kernel's stop button ends training at the next step and keeps the adapter.
        """
        args = parse(self.finetune, line)
        adapter = self.session.finetune(
            cell, self._variable(args.train, "--train", path_ok=True), args.name,
            eval=self._variable(args.eval, "--eval", path_ok=True) if args.eval else None, val_split=args.val_split,
            input_col=args.input_col, label_col=args.label_col, labels=args.labels, label_names=args.label_names,
            live=True, method=args.method, epochs=args.epochs, max_steps=args.max_steps, lr=args.lr,
            batch_size=args.batch_size, grad_accum=args.grad_accum, max_len=args.max_len, seed=args.seed,
            loss=args.loss, raw=args.raw, eval_steps=args.eval_steps, early_stopping=args.early_stopping,
            warmup=args.warmup, rank=args.rank, alpha=args.alpha, dropout=args.dropout,
            target_modules=args.target_modules, virtual_tokens=args.virtual_tokens, init_text=args.init_text,
            unfreeze_groups=args.unfreeze_groups, unfreeze_every=args.unfreeze_every)
        status = (f"interrupted at step {adapter.interrupted_at}; kept as of that step"
                  if adapter.interrupted_at is not None else f"{adapter.steps} steps")
        print(f"Adapter {adapter.name!r} ({adapter.method}, {status}, {adapter.train_seconds:.0f}s): "
              f"%ftpe use {adapter.name} to activate it, or 'adapter {adapter.name}' in %%compare.")
