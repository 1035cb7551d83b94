"""The object a ``%%prompt`` run returns: outputs plus everything needed to reproduce them.

It renders as plain text anywhere; in a notebook the front end registers ``display.html`` as its
HTML formatter (static HTML, so a saved notebook still shows it with no kernel and no widget
state). It converts to pandas for analysis.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from ..errors import FtpeError
from ..inference.generation import GenerationSettings
from .diffing import changed_settings, unified_text_diff


@dataclass
class PromptResult:
    template: str
    prompts: list[str]
    outputs: list[list[str]]
    settings: GenerationSettings
    model: str
    seconds: float
    prompt_tokens: list[int]
    rows: list[dict] | None = None
    name: str | None = None
    interrupted: bool = False
    previous: PromptResult | None = field(default=None, repr=False)
    created: datetime = field(default_factory=datetime.now)

    @property
    def text(self) -> str:
        """The output of a single-prompt run (its first sample)."""
        if len(self.prompts) != 1:
            raise FtpeError(f"This result holds {len(self.prompts)} prompts: use .texts or .to_pandas().")
        return self.outputs[0][0]

    @property
    def texts(self) -> list[str]:
        """First sample of every prompt, aligned with the rows of ``--over``."""
        return [samples[0] for samples in self.outputs]

    @property
    def record(self) -> dict:
        """Settings that identify the run, as compared by the re-run diff."""
        return {"template": self.template, "model": self.model, **self.settings.as_dict()}

    def sample_counts(self, index: int = 0) -> list[tuple[str, int]]:
        """Distinct outputs of one prompt with how often each was sampled, most common first."""
        return Counter(self.outputs[index]).most_common()

    def consistency(self) -> float:
        """Mean share of samples that agree with their prompt's most common output (1.0 = always the same)."""
        shares = [self.sample_counts(i)[0][1] / len(samples) for i, samples in enumerate(self.outputs)]
        return sum(shares) / len(shares)

    def to_pandas(self):
        import pandas as pd

        records = []
        for index, (prompt, samples) in enumerate(zip(self.prompts, self.outputs, strict=True)):
            for sample_index, output in enumerate(samples):
                row = dict(self.rows[index]) if self.rows else {}
                row.update(row_index=index, sample=sample_index, prompt=prompt, output=output,
                           prompt_tokens=self.prompt_tokens[index])
                records.append(row)
        return pd.DataFrame.from_records(records)

    def changed_settings(self) -> dict[str, tuple]:
        """What differs from the previous run of the same name, as ``{key: (old, new)}``."""
        return changed_settings(self.previous.record, self.record) if self.previous is not None else {}

    def _diff_text(self) -> str:
        if self.previous is None:
            return ""
        settings = self.changed_settings()
        lines = [f"--- diff against the previous run of '{self.name}' ---"]
        lines += [f"  {key}: {old!r} -> {new!r}" for key, (old, new) in settings.items() if key != "template"]
        if "template" in settings:
            lines.append(unified_text_diff(self.previous.template, self.template, "template before", "template now"))
        lines.append(unified_text_diff("\n".join(self.previous.texts), "\n".join(self.texts)))
        return "\n".join(lines)

    def __str__(self) -> str:
        head = f"[{self.name or 'prompt'}] {self.model}, {len(self.prompts)} prompt(s), {self.seconds:.2f}s"
        if self.interrupted:
            head += " - INTERRUPTED, partial output"
        body = []
        for index, prompt in enumerate(self.prompts):
            if len(self.prompts) > 1:
                body.append(f"#{index}: {prompt}")
            if self.settings.samples > 1:
                body += [f"  {count}x {text}" for text, count in self.sample_counts(index)]
            else:
                body.append(self.outputs[index][0])
        diff = self._diff_text()
        return "\n".join([head, *body] + ([diff] if diff else []))

    def _repr_pretty_(self, printer, cycle: bool) -> None:
        printer.text(str(self))
