"""The IPython magics: argument parsing and display only; the work is done by :class:`Session`."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.display import display

from .config import DEVICES, DTYPES
from .errors import FtpeError
from .session import Session

LINE_MAGICS = ("ftpe",)
CELL_MAGICS = ("prompt",)


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

    def _variable(self, name: str, option: str) -> Any:
        if name not in self.shell.user_ns:
            raise FtpeError(f"{option}: no variable named {name!r} in the notebook. Define it first.")
        return self.shell.user_ns[name]

    @magic_arguments()
    @argument("action", choices=["load", "status", "unload", "history"],
              help="load [MODEL]: load a model (hub id, folder or .gguf; none = the default); "
                   "status: model, device, memory; unload: free the model; history: runs of this session.")
    @argument("model", nargs="?", default=None, help="For load: hub id, local folder or .gguf file.")
    @argument("--device", choices=DEVICES, default=None, help="Where to load the model (default: Ftpe.device).")
    @argument("--dtype", choices=DTYPES, default=None, help="Weight dtype (default: Ftpe.dtype).")
    @argument("--trust-remote-code", action="store_true",
              help="Allow model code from the hub to run (off unless you trust the source).")
    @line_magic
    @user_errors
    def ftpe(self, line: str) -> None:
        """Manage the shared model session: load, status, unload, history."""
        args = parse_argstring(self.ftpe, line)
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
        args = parse_argstring(self.prompt, line)
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
