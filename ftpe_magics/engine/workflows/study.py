"""``%%compare --study``: the standard study in one cell, written out as the condition lines it stands for.

From one example template (with ``{label}``) and ``--train``, the study compares what each side does best with
the data there is: the zero-shot prompt, a cross-validated few-shot search (``similar`` demonstrations to start
from, k=0 and calibration among the candidates), the linear probe, the classification head and a searched LoRA,
on the adaptive curve (``--sizes auto``) unless ``--sizes`` is given. The lines are ordinary condition lines, so
the table, the curve, the result cache and the verdict treat them like hand-written ones, and the output says
what ran and why.
"""

from __future__ import annotations

from ..data.examples import Examples
from ..errors import FtpeError
from ..prompting.fewshot import FewShotConfig
from ..prompting.templates import ExampleTemplate
from ..workbench import Workbench

STUDY_FEWSHOT = "study-fewshot"  # the few-shot configuration the study's search starts from
FEWSHOT_CANDIDATES, LORA_TRIALS = 8, 4


def _escaped(text: str) -> str:
    """A template as a condition line writes it: backslashes doubled, newlines as \\n."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def study_body(bench: Workbench, body: str, train: Examples | None, seed: int) -> str:
    """The condition lines of the study for ``body``; keeps the few-shot configuration its search starts from."""
    if train is None:
        raise FtpeError("--study compares what each side learns from --train; add --train VAR.")
    template = ExampleTemplate.from_body(body)
    if not template.has_label or not template.template.rstrip().endswith("{label}"):
        raise FtpeError(r"--study takes one example template ending in {label} as the cell, e.g. "
                        r"Review: {text}\nSentiment: {label} (no condition lines: the study writes them).")
    bench.runs.keep_fewshot(FewShotConfig(STUDY_FEWSHOT, template, train, k=4, select="similar", seed=seed))
    example = _escaped(body.strip("\n"))
    lines = [f"zero-shot: prompt {example}",
             f"few-shot: fewshot {STUDY_FEWSHOT} search={FEWSHOT_CANDIDATES}",
             f"probe: finetune probe val-split=0.2 {example}",
             f"head: finetune head val-split=0.2 {example}",
             f"lora: finetune lora search={LORA_TRIALS} {example}"]
    bench.log("Study: zero-shot; few-shot searched over "
              f"{FEWSHOT_CANDIDATES} candidates (k, selection, calibration, by cross-validation on the pool); a "
              "linear probe and a classification head (each with a validation split); LoRA searched over "
              f"{LORA_TRIALS} trials. Every line is scored on --train too, and the verdict compares the best of "
              "each side by that score: the eval set decides nothing but the final comparison.")
    return "\n".join(lines)
