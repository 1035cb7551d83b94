"""A run store written by ftpe_magics 0.3.0 opens, lists and rebuilds its runs with today's code.

``fixtures/store-0.3.0.sqlite`` was written by the 0.3.0 release on the tiny test model: a named prompt, a
few-shot run, a k sweep, a LoRA fine-tune and a three-condition comparison.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ftpe_magics import CompareResult, Ftpe, PromptResult, Session

FIXTURE = Path(__file__).parent / "fixtures" / "store-0.3.0.sqlite"


def _old_store(tmp_path: Path) -> Session:
    store = tmp_path / "runs.sqlite"
    shutil.copy(FIXTURE, store)
    config = Ftpe()
    config.store = str(store)
    return Session(config, log=lambda message: None)


def test_a_store_written_by_0_3_0_lists_every_run(tmp_path):
    table = _old_store(tmp_path).history_table()
    assert list(table["kind"]) == ["compare", "finetune", "fewshot", "fewshot", "prompt"]
    assert list(table["status"]) == ["finished"] * 5
    assert table.iloc[0]["summary"] == "best zero 0.500 (3 condition(s), n=20)"


def test_a_store_written_by_0_3_0_rebuilds_each_run_as_it_was_shown(tmp_path):
    session = _old_store(tmp_path)
    ids = dict(zip(session.history_table()["kind"][::-1], session.history_table()["id"][::-1], strict=True))
    view, prompt = session.stored_run(int(ids["prompt"]))
    assert view == "prompt" and isinstance(prompt, PromptResult)
    assert prompt.name == "hello" and prompt.prompts == ["Say hi"]
    view, comparison = session.stored_run(int(ids["compare"]))
    assert view == "compare" and isinstance(comparison, CompareResult)
    assert [c.condition for c in comparison.conditions] == ["zero", "fs2", "ft"]
    assert [c.kind for c in comparison.conditions] == ["prompt", "fewshot", "adapter"]
    assert all(c.n == 20 and len(c.predictions) == 20 for c in comparison.conditions)
    numbers = comparison.verdict().numbers  # the verdict is rebuilt from the stored conditions
    assert (numbers["prompt"], numbers["finetune"], numbers["p"]) == ("zero", "ft", 1.0)
    view, record = session.stored_run(int(ids["finetune"]))
    assert view == "finetune" and record.summary_row["steps"] == 2
