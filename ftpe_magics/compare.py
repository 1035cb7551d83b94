r"""``%%compare`` bodies: one condition per line, ``LABEL: KIND SPEC``.

    zero:  prompt  Review: {text}\nSentiment:
    cot:   cot     Review: {text}\nThink step by step, then answer positive or negative.
    fs4:   fewshot fs4

``\n`` in a spec is a newline (``\\n`` a literal backslash-n); blank lines and lines starting with
``#`` are skipped. Each kind maps to one runner, so a new kind is one entry in ``RUNNERS``.
Prompting conditions always run on the base model and ``adapter NAME`` on that adapter, whatever
``%ftpe use`` made active, so the table compares what it says it compares.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from .errors import FtpeError, did_you_mean
from .evaluation import ConditionResult, Evaluator
from .templating import unescape_newlines

_LINE = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*:\s*([A-Za-z_-]+)\s*(.*?)\s*$")


@dataclass(frozen=True)
class ConditionSpec:
    label: str
    kind: str
    spec: str


def _run_prompt(session, evaluator: Evaluator, spec: ConditionSpec) -> ConditionResult:
    with session.using("base"):
        return evaluator.prompt(spec.label, spec.spec)


def _run_cot(session, evaluator: Evaluator, spec: ConditionSpec) -> ConditionResult:
    with session.using("base"):
        return evaluator.cot(spec.label, spec.spec)


def _run_adapter(session, evaluator: Evaluator, spec: ConditionSpec) -> ConditionResult:
    adapter = session.adapter(spec.spec.strip())
    with session.using(adapter.name):
        return evaluator.adapter(spec.label, adapter)


def _run_base(session, evaluator: Evaluator, spec: ConditionSpec) -> ConditionResult:
    """The base model alone: on a template if given, else on the newest adapter's training format."""
    with session.using("base"):
        if spec.spec:
            return evaluator.prompt(spec.label, spec.spec, kind="base")
        if not session.adapters:
            raise FtpeError("'base' without a template scores the base model in an adapter's training format, "
                            "and there is no adapter yet: give a template (base Review: {text}\\nSentiment:).")
        return evaluator.adapter(spec.label, list(session.adapters.values())[-1], kind="base")


def _run_fewshot(session, evaluator: Evaluator, spec: ConditionSpec) -> ConditionResult:
    with session.using("base"):
        return evaluator.fewshot(spec.label, session.fewshot_configs[spec.spec.strip()])


RUNNERS: dict[str, Callable[..., ConditionResult]] = {"prompt": _run_prompt, "cot": _run_cot,
                                                       "fewshot": _run_fewshot, "adapter": _run_adapter,
                                                       "base": _run_base}
NEEDS_SPEC = {"prompt", "cot", "fewshot", "adapter"}


def parse_conditions(body: str) -> list[ConditionSpec]:
    specs: list[ConditionSpec] = []
    for number, line in enumerate(body.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _LINE.match(line)
        if not match:
            raise FtpeError(f"Line {number} of %%compare is not 'LABEL: KIND SPEC': {line.strip()!r}. "
                            r"Example: zero: prompt Review: {text}\nSentiment:")
        label, kind, spec = match.group(1), match.group(2).lower(), unescape_newlines(match.group(3))
        if kind not in RUNNERS:
            raise FtpeError(f"Line {number}: unknown kind {kind!r}.{did_you_mean(kind, RUNNERS)} "
                            f"Kinds: {', '.join(RUNNERS)}.")
        if kind in NEEDS_SPEC and not spec:
            raise FtpeError(f"Line {number}: {kind} needs a spec after the kind (a template or a name).")
        if any(existing.label == label for existing in specs):
            raise FtpeError(f"Line {number}: the label {label!r} is used twice; give each condition its own.")
        specs.append(ConditionSpec(label, kind, spec))
    if not specs:
        raise FtpeError("%%compare has no conditions: write one per line, LABEL: KIND SPEC.")
    return specs


def check_references(session, specs: list[ConditionSpec]) -> None:
    """Fail on a missing few-shot configuration or adapter before any condition runs (no work is thrown away)."""
    for spec in specs:
        name = spec.spec.strip()
        if spec.kind == "fewshot" and name not in session.fewshot_configs:
            known = list(session.fewshot_configs)
            raise FtpeError(f"{spec.label}: no few-shot configuration named {name!r}.{did_you_mean(name, known)} "
                            "Run %%fewshot --name NAME first" + (f" (known: {', '.join(known)})." if known else "."))
        if spec.kind == "adapter":
            session.adapter(name)


def run_conditions(session, evaluator: Evaluator, specs: list[ConditionSpec]) -> list[ConditionResult]:
    check_references(session, specs)
    return [RUNNERS[spec.kind](session, evaluator, spec) for spec in specs]
