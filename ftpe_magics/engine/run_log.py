"""What a session remembers of its runs: prompt history, named runs for re-run diffs, named few-shot
configurations for ``%%compare``, and the best prompting scores the training view draws as references."""

from __future__ import annotations

from collections.abc import Iterable

from .evaluation.condition_kinds import KINDS
from .evaluation.evaluator import ConditionResult
from .prompting.fewshot import FewShotConfig
from .prompting.prompt_result import PromptResult


class RunLog:
    def __init__(self) -> None:
        self.history: list[PromptResult] = []
        self.named_runs: dict[str, PromptResult] = {}
        self.fewshot_configs: dict[str, FewShotConfig] = {}
        self.prompting_scores: dict[str, float] = {}

    def previous(self, name: str | None) -> PromptResult | None:
        return self.named_runs.get(name) if name else None

    def record_prompt(self, result: PromptResult) -> None:
        self.history.append(result)
        if result.name:
            self.named_runs[result.name] = result

    def keep_fewshot(self, config: FewShotConfig) -> None:
        self.fewshot_configs[config.name] = config

    def remember_scores(self, results: Iterable[ConditionResult]) -> None:
        for result in results:
            kind = KINDS.get(result.kind)
            if kind is not None and kind.reference_while_training:
                self.prompting_scores[result.condition] = result.accuracy

    def history_rows(self) -> list[dict]:
        return [{"run": index, "name": result.name or "", "time": result.created.strftime("%H:%M:%S"),
                 "prompts": len(result.prompts), "samples": result.settings.samples,
                 "seconds": round(result.seconds, 3), "interrupted": result.interrupted,
                 "first output": result.outputs[0][0][:60]} for index, result in enumerate(self.history)]
