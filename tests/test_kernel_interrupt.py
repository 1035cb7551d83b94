"""The kernel's stop button, pressed for real (``interrupt_kernel``) during scoring and generation."""

from __future__ import annotations

import os
import queue
import time

import pytest

pytestmark = pytest.mark.notebook

SETUP = """
%load_ext ftpe_magics
%config Ftpe.default_model = {model!r}
%ftpe load
rows = [{{"text": f"review number {{i}} was fine", "label": ["positive", "negative"][i % 2]}} for i in range(4000)]
"""


def _run(client, code: str, interrupt_after: float | None = None, manager=None, timeout: float = 120) -> str:
    """Execute ``code``; optionally press stop after some seconds; return everything the cell showed."""
    msg_id = client.execute(code)
    pressed = interrupt_after is None
    started = time.monotonic()
    shown = []
    while time.monotonic() - started < timeout:
        if not pressed and time.monotonic() - started > interrupt_after:
            manager.interrupt_kernel()
            pressed = True
        try:
            message = client.get_iopub_msg(timeout=0.2)
        except queue.Empty:
            continue
        if message["parent_header"].get("msg_id") != msg_id:
            continue
        content, kind = message["content"], message["msg_type"]
        if kind == "stream":
            shown.append(content["text"])
        elif kind in ("display_data", "execute_result"):
            shown.append(content["data"].get("text/plain", ""))
        elif kind == "error":
            shown.append(f"ERROR {content['ename']}: {content['evalue']}\n" + "\n".join(content["traceback"]))
        elif kind == "status" and content["execution_state"] == "idle":
            return "".join(shown)
    raise AssertionError(f"the cell did not finish in {timeout}s: {''.join(shown)[-500:]}")


def test_stop_button_marks_conditions_and_keeps_the_session(tiny_model_dir, tmp_path):
    from jupyter_client.manager import start_new_kernel

    manager, client = start_new_kernel(kernel_name="python3", env={**os.environ, "FTPE_CACHE": str(tmp_path)})
    try:
        _run(client, SETUP.format(model=str(tiny_model_dir)))
        out = _run(client, "%%compare --eval rows --metric contains --batch-size 1 --max-new-tokens 40 --out t\n"
                           "gen: prompt Say something about {text}\nnever: prompt Other {text}",
                   interrupt_after=4, manager=manager)
        assert "Traceback" not in out and "KeyboardInterrupt" not in out
        assert "gen interrupted" in out and "not run: never" in out
        check = _run(client, "print(t.conditions[0].interrupted, len(t.conditions), "
                             "t.to_pandas()['accuracy'].isna()[0])")
        assert check.strip() == "True 1 True"
        out = _run(client, "%%fewshot --train rows --eval rows --k 2 --allow-overlap --batch-size 1 --out f\n"
                           "Review: {text}\nSentiment: {label}", interrupt_after=3, manager=manager)
        assert "Traceback" not in out and "KeyboardInterrupt" not in out and "interrupted" in out
        status = _run(client, "%ftpe status")
        assert "tiny-model" in status and "parameters" in status
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
