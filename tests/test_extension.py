"""``%unload_ext`` undoes everything ``%load_ext`` did, and using the extension leaves no filter behind."""

from __future__ import annotations

import logging
import warnings

from IPython.core.interactiveshell import InteractiveShell

from ftpe_magics import CompareResult, PromptResult, get_session


def _loggers_filters() -> dict[str, list]:
    """Every logger's filters (a logger created by an import since has none: it is left out)."""
    loggers = [logging.getLogger()] + [logging.getLogger(name) for name in logging.root.manager.loggerDict]
    return {logger.name: list(logger.filters) for logger in loggers
            if isinstance(logger, logging.Logger) and logger.filters}


OURS = [("line", "ftpe"), ("cell", "prompt"), ("cell", "fewshot"), ("cell", "compare"), ("cell", "finetune")]


def _state(shell) -> dict:
    html = shell.display_formatter.formatters["text/html"]
    return {"warnings": list(warnings.filters), "logging": _loggers_filters(),
            "formatters": {t: html.type_printers.get(t) for t in (CompareResult, PromptResult)},
            "magics": {(kind, name): shell.magics_manager.magics[kind].get(name) for kind, name in OURS},
            "configurables": [type(c).__name__ for c in shell.configurables if type(c).__module__.startswith("ftpe")],
            "log": get_session().log, "config": get_session().config}


def test_unload_puts_back_what_load_changed_even_after_the_extension_ran(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("FTPE_CACHE", str(tmp_path / "cache"))
    shell = InteractiveShell.instance()
    shell.register_magic_function(lambda line, cell: f"mine: {cell}", magic_kind="cell", magic_name="prompt")
    shell.user_ns["rows"] = [{"text": "good", "label": "positive"}, {"text": "bad", "label": "negative"}] * 2
    get_session().unload(quiet=True)
    before = _state(shell)
    shell.run_line_magic("load_ext", "ftpe_magics")
    assert shell.find_cell_magic("prompt").__self__.__class__.__name__ == "FtpeMagics"
    shell.run_line_magic("config", f"Ftpe.default_model = {str(tiny_model_dir)!r}")
    shell.run_line_magic("config", "Ftpe.store = ''")
    shell.run_cell_magic("prompt", "--max-new-tokens 2", "Say hi")
    shell.run_cell_magic("finetune", "--train rows --name ext --max-steps 1 --batch-size 2", "{text} {label}")
    shell.run_line_magic("unload_ext", "ftpe_magics")
    get_session().unload(quiet=True)
    get_session().history.clear()  # the prompt above: nothing of this test is left for the next
    after = _state(shell)
    assert after == before
    assert shell.run_cell_magic("prompt", "", "x") == "mine: x"  # the user's own magic of that name is back
    shell.magics_manager.magics["cell"].pop("prompt")


def test_the_library_notices_are_silenced_inside_the_call_only(tiny_session):
    filters, logs = list(warnings.filters), _loggers_filters()
    tiny_session.prompt("hi", max_new_tokens=1)
    tiny_session.finetune("{text} {label}", [{"text": "a", "label": "x"}, {"text": "b", "label": "y"}] * 2, "quiet",
                          max_steps=1, batch_size=2)
    assert list(warnings.filters) == filters and _loggers_filters() == logs
