"""Running one condition (zero-shot, few-shot, chain-of-thought, an adapter) over a held-out set.

Every condition ends as a :class:`ConditionResult` with per-example predictions and scores, so
``%%compare`` can put them in one table and test them against each other on the same examples.
"""

from __future__ import annotations

import contextlib
import copy
import re
import time
from collections import ChainMap
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from ..adapters.registry import Adapter
from ..data.examples import Examples
from ..data.splits import overlapping
from ..errors import FtpeError
from ..inference.generation import GenerationSettings, generate_texts, render_prompts
from ..inference.scoring import label_logprobs, mean_pooled_embeddings
from ..inference.stopping import scored_part
from ..prompting.calibration import CONTENT_FREE, calibrated, content_free_bias
from ..prompting.fewshot import FewShotConfig, reorder, select_demos, verbalized
from ..prompting.templates import ExampleTemplate, assemble, fill, scoring_inputs, template_fields
from .judge import Judge, agreement_with_exact, judged_scores
from .metrics import STRUCTURED_METRICS, Metric, apply_metric, judge, similarity
from .stats import accuracy_interval, macro_f1, modal_agreement
from .structured import canonical_answer, parse_report


class ModelHandle(Protocol):
    """What evaluation needs of a session: the model to run now, its tokenizer, and a key naming its weights."""

    @property
    def model(self) -> Any: ...

    @property
    def tokenizer(self) -> Any: ...

    @property
    def model_key(self) -> str: ...

    @property
    def device(self) -> str | None: ...

    @property
    def embedding_cache(self) -> dict[str, dict[str, np.ndarray]]: ...

    def stored_embeddings(self, texts: list[str]) -> dict[str, np.ndarray]: ...

    def keep_embeddings(self, vectors: dict[str, np.ndarray]) -> None: ...


@dataclass
class ConditionResult:
    condition: str
    kind: str
    spec: str
    references: list[str]
    predictions: list[str]
    outputs: list[str]
    scores: list[float]
    label_set: list[str] | None
    seconds: float
    prompt_tokens: list[int]
    example_prompt: str
    samples: list[list[str]] | None = None
    trainable_params: int = 0
    train_seconds: float = 0.0
    order_accuracies: list[float] | None = None
    extra: dict = field(default_factory=dict)
    # the stop button cut this condition short: its partial outputs are kept, but it is not scored
    interrupted: bool = False
    # predicted by argmax (a classification head): every sample would be the same answer
    deterministic: bool = False

    @property
    def n(self) -> int:
        return len(self.scores)

    @property
    def accuracy(self) -> float:
        return float("nan") if self.interrupted else float(np.mean(self.scores))

    @property
    def correct(self) -> list[bool]:
        return [score >= 0.5 for score in self.scores]

    @property
    def interval(self) -> tuple[float, float]:
        return (float("nan"), float("nan")) if self.interrupted else accuracy_interval(self.scores)

    @property
    def macro_f1(self) -> float | None:
        return macro_f1(self.predictions, self.references, self.label_set) if self.label_set else None

    @property
    def consistency(self) -> float | None:
        if self.deterministic:
            return 1.0
        if self.samples and "format" in self.extra:  # a structured answer: samples agree when their objects do
            return modal_agreement([[canonical_answer(text) for text in row] for row in self.samples])
        return modal_agreement(self.samples) if self.samples else None

    @property
    def latency_ms(self) -> float:
        return 1000 * self.seconds / max(1, self.n)

    @property
    def mean_prompt_tokens(self) -> float:
        return float(np.mean(self.prompt_tokens)) if self.prompt_tokens else 0.0

    @property
    def tokens_generated(self) -> float | None:
        """Tokens generated per query (None when the answer was scored, not generated): a generation task's
        other cost, beside the prompt it reads."""
        counts = self.extra.get("tokens_generated")
        return float(np.mean(counts)) if counts else None

    @property
    def leakage_notice(self) -> str | None:
        """What the leakage guard did, said in the text and the HTML view alike."""
        overlap = self.extra.get("overlap", 0)
        if not overlap:
            return None
        return (f"Leakage guard: {overlap} eval example(s) also appear in the training pool; their duplicates were "
                "excluded from the demonstrations (--allow-overlap keeps them).")


@dataclass
class Scored:
    """One pass of a condition over the eval set, before it is scored against the references."""

    predictions: list[str]
    samples: list[list[str]] | None
    seconds: float
    prompt_tokens: list[int]
    example_prompt: str = ""
    interrupted: bool = False
    new_tokens: list[float] | None = None  # generated tokens per query, when the answers were generated


class Evaluator:
    """Scores conditions on one eval set with the session's model: by label likelihood, or generate + metric."""

    def __init__(self, handle: ModelHandle, eval_data: Examples, defaults: GenerationSettings, *,
                 metric: tuple[str, Metric] | None = None, norm: str = "none", samples: int = 1, seed: int = 0,
                 max_new_tokens: int | None = None, answer_regex: str | None = None,
                 namespace: Mapping[str, Any] | None = None, judge_spec: Judge | None = None) -> None:
        if len(eval_data) == 0:
            raise FtpeError("The eval set is empty.")
        if samples < 1:
            raise FtpeError("--samples must be at least 1.")
        self.handle = handle
        self.eval_data = eval_data
        self.defaults = defaults  # max_new_tokens and batch_size as the session's config sets them
        self.metric = metric
        self.norm = norm
        self.samples = samples
        self.seed = seed
        self.batch_size = defaults.batch_size
        self.max_new_tokens = max_new_tokens
        self.answer_regex = answer_regex
        self.namespace = dict(namespace or {})
        self.judge = judge_spec  # --metric judge: the judge's template and grades
        self.notices: list[str] = []  # things the user should know about the scores, said once per run

    @property
    def classification(self) -> bool:
        return self.metric is None

    def _row(self, row: dict) -> ChainMap:
        return ChainMap(row, self.namespace)

    def _share(self):
        """The call's shared scoring work, when the session has one open (handles without it share nothing)."""
        return getattr(self.handle, "scoring_share", None)

    # -- the two ways of scoring -------------------------------------------------------------
    def _classify(self, contexts: list[str], template: ExampleTemplate | None, add_special_tokens: bool = True,
                  continuations: list[str] | None = None, bias: np.ndarray | None = None) -> Scored:
        labels = self.eval_data.label_set
        if len(labels) < 2:
            raise FtpeError(f"Classification needs at least two labels; the eval set has {labels}. "
                            "Give --labels, or score generated text with --metric.")
        continuations = continuations or [template.continuation(label) for label in labels]
        scored = label_logprobs(self.handle.model, self.handle.tokenizer, contexts, continuations,
                                self.batch_size, add_special_tokens=add_special_tokens, share=self._share())
        self._warn_prefix_labels(continuations)
        normalised = scored.normalised(labels, self.norm)
        if bias is not None:  # contextual calibration: the prompt's content-free label bias divided out
            normalised = calibrated(normalised, bias)
        predictions = [labels[i] if done else "" for i, done in zip(normalised.argmax(axis=1), scored.complete,
                                                                     strict=True)]
        samples = None
        if self.samples > 1:  # draw labels from the model's own distribution over the label set
            probs = np.exp(normalised - normalised.max(axis=1, keepdims=True))
            probs /= probs.sum(axis=1, keepdims=True)
            rng = np.random.default_rng(self.seed)
            samples = [[labels[rng.choice(len(labels), p=p)] for _ in range(self.samples)] for p in probs]
        return Scored(predictions, samples, scored.seconds, scored.prompt_tokens, interrupted=scored.interrupted)

    def _warn_prefix_labels(self, continuations: list[str]) -> None:
        """Summed log-probabilities favour a label whose tokens begin another's: say so, with the fix."""
        if self.norm != "none":
            return
        ids = [self.handle.tokenizer(text, add_special_tokens=False)["input_ids"] for text in continuations]
        labels = self.eval_data.label_set
        for short, long in ((a, b) for a in range(len(ids)) for b in range(len(ids)) if a != b):
            if len(ids[short]) < len(ids[long]) and ids[long][:len(ids[short])] == ids[short]:
                self.notices.append(f"Label {labels[short]!r} is the start of {labels[long]!r}: with --norm none "
                                    f"the shorter one is favoured. Use --norm tokens, or label words that differ "
                                    "from their first token.")
                return

    @property
    def answer_stop(self) -> str:
        """Where a generated answer ends: at its first JSON object for a structured metric (which may span lines),
        else at its first line with content."""
        return "object" if self.metric is not None and self.metric[0] in STRUCTURED_METRICS else "line"

    def _answer(self, text: str) -> str:
        """The part of an output the metric scores (see :mod:`..inference.stopping`)."""
        return scored_part(text, self.answer_stop)

    def _generate(self, prompts: list[str], raw: bool, max_new_tokens: int | None = None, whole: bool = False):
        """Generate for every prompt (batched by length); each row stops where what is scored ends (its first line,
        or its first JSON object), unless ``whole`` (chain-of-thought asks for the whole reasoning)."""
        greedy = self.samples == 1
        settings = replace(self.defaults, max_new_tokens=max_new_tokens or self.max_new_tokens
                           or self.defaults.max_new_tokens, raw=raw, temperature=0.0 if greedy else 0.7,
                           samples=self.samples, seed=self.seed)
        return generate_texts(self.handle.model, self.handle.tokenizer, prompts, settings,
                              stop=None if whole else self.answer_stop)

    def _score_generated(self, outputs: list[str]) -> tuple[list[float], dict]:
        """The metric's first score per output (the accuracy), and what goes into the result's extra: the other
        scores per output (``metric_scores``) and, for a structured metric, the outputs' format report."""
        name, metric = self.metric
        if metric is similarity:
            return self._similarities(outputs), {}
        if metric is judge:
            return self._judged(outputs)
        rows = [apply_metric(metric, name, output, reference)
                for output, reference in zip(outputs, self.eval_data.labels, strict=True)]
        first = next(iter(rows[0]))
        extra: dict = {}
        others = [key for key in rows[0] if key != first]
        if others:
            extra["metric_scores"] = {key: [row.get(key, 0.0) for row in rows] for key in others}
        if name in STRUCTURED_METRICS:
            extra["format"] = parse_report(outputs)
        return [row[first] for row in rows], extra

    def _judged(self, outputs: list[str]) -> tuple[list[float], dict]:
        """``--metric judge``: the base model (no adapter: a fine-tune does not grade its own answers) grades every
        output; its agreement with exact match on the same rows goes with the scores."""
        if self.judge is None:
            raise FtpeError("--metric judge needs --judge-template VAR.")
        adapters = getattr(self.handle, "adapters", None)
        with adapters.using("base") if adapters is not None else contextlib.nullcontext():
            scores, interrupted = judged_scores(self.judge, self.handle.model, self.handle.tokenizer, outputs,
                                                self.eval_data.labels, [self._row(row) for row in self.eval_data.rows],
                                                self.batch_size)
        return scores, {"judge": agreement_with_exact(scores, outputs, self.eval_data.labels),
                        "judge_interrupted": interrupted}

    def _similarities(self, outputs: list[str]) -> list[float]:
        """``--metric similarity``: each output's cosine with its reference in the model's pooled states, every
        distinct text embedded once, in batches."""
        texts = [text for text in dict.fromkeys([*outputs, *self.eval_data.labels]) if text.strip()]
        vectors = dict(zip(texts, mean_pooled_embeddings(self.handle.model, self.handle.tokenizer, texts,
                                                         self.batch_size), strict=True)) if texts else {}
        return [min(1.0, max(0.0, float(vectors[output] @ vectors[reference])))  # unit vectors: the cosine
                if output in vectors and reference in vectors else 0.0  # an empty output is not similar
                for output, reference in zip(outputs, self.eval_data.labels, strict=True)]

    def _result(self, condition: str, kind: str, spec: str, predictions: list[str], outputs: list[str],
                seconds: float, prompt_tokens: list[int], example_prompt: str, samples=None,
                interrupted: bool = False, **extra) -> ConditionResult:
        references = self.eval_data.labels
        if self.classification:
            scores = [float(p == r) for p, r in zip(predictions, references, strict=True)]
        else:
            scores, measured = self._score_generated(predictions)
            interrupted = measured.pop("judge_interrupted", False) or interrupted  # stopped while grading
            extra.update(measured)
        fields = {key: extra.pop(key) for key in ("trainable_params", "train_seconds") if key in extra}
        return ConditionResult(condition, kind, spec, references, predictions, outputs, scores,
                               self.eval_data.label_set if self.classification else None, seconds, prompt_tokens,
                               example_prompt, samples=samples, extra=extra, interrupted=interrupted, **fields)

    # -- conditions ------------------------------------------------------------------------------
    def prompt(self, condition: str, template_text: str, kind: str = "prompt") -> ConditionResult:
        """Zero-shot: the template alone (a template without {label} gets the label after one space)."""
        template = ExampleTemplate(template_text)
        rows = [self._row(row) for row in self.eval_data.rows]
        if self.classification:
            contexts = [template.query(row) for row in rows]
            scored = self._classify(contexts, template)
            return self._result(condition, kind, template_text, scored.predictions, scored.predictions,
                                scored.seconds, scored.prompt_tokens, contexts[0] + template.continuation("<label>"),
                                samples=scored.samples, interrupted=scored.interrupted)
        prompts = [template.query(row) for row in rows]
        run = self._generate(prompts, raw=False)
        predictions = [self._answer(samples[0]) for samples in run.outputs]
        return self._result(condition, kind, template_text, predictions, [s[0] for s in run.outputs], run.seconds,
                            run.prompt_tokens, prompts[0],
                            samples=[[self._answer(s) for s in row] for row in run.outputs] if self.samples > 1
                            else None, interrupted=run.interrupted, tokens_generated=run.new_tokens)

    def cot(self, condition: str, template_text: str, answer_prefix: str = "\nSo the answer is") -> ConditionResult:
        """Chain-of-thought: generate reasoning, then take the answer from it (regex, else label likelihood)."""
        started = time.perf_counter()
        template = ExampleTemplate(template_text)
        prompts = [template.query(self._row(row)) for row in self.eval_data.rows]
        run = self._generate(prompts, raw=False, max_new_tokens=self.max_new_tokens or 128, whole=True)
        draws = len(run.outputs[0])
        flat = [(i, text) for i, samples in enumerate(run.outputs) for text in samples]
        answers: list[str | None] = [self._extract(text) for _, text in flat]
        missing = [j for j, answer in enumerate(answers) if answer is None]
        interrupted = run.interrupted
        if missing and self.classification and not interrupted:  # no more work once the stop button was pressed
            rendered, _ = render_prompts(self.handle.tokenizer, [prompts[flat[j][0]] for j in missing], None, False)
            contexts = [r + flat[j][1] + answer_prefix for r, j in zip(rendered, missing, strict=True)]
            fallback = self._classify(contexts, ExampleTemplate("{x}"), add_special_tokens=False)
            interrupted = fallback.interrupted
            for j, label in zip(missing, fallback.predictions, strict=True):
                answers[j] = label
        answers = [a if a is not None else self._answer(text) for a, (_, text) in zip(answers, flat, strict=True)]
        samples = [answers[i * draws:(i + 1) * draws] for i in range(len(prompts))]
        return self._result(condition, "cot", template_text, [row[0] for row in samples],
                            [row[0] for row in run.outputs], time.perf_counter() - started, run.prompt_tokens,
                            prompts[0], samples=samples if self.samples > 1 else None, interrupted=interrupted,
                            extracted_by_regex=len(flat) - len(missing), tokens_generated=run.new_tokens)

    def _extract(self, reasoning: str) -> str | None:
        if self.answer_regex:
            matches = re.findall(self.answer_regex, reasoning, flags=re.IGNORECASE)
            if matches:
                found = matches[-1] if isinstance(matches[-1], str) else matches[-1][0]
                return self._as_label(found.strip())
            return None
        if self.classification:
            words = "|".join(re.escape(label) for label in sorted(self.eval_data.label_set, key=len, reverse=True))
            matches = re.findall(rf"\b({words})\b", reasoning, flags=re.IGNORECASE)
            return self._as_label(matches[-1]) if matches else None
        return None

    def _as_label(self, text: str) -> str | None:
        if not self.classification:
            return text
        lowered = {label.lower(): label for label in self.eval_data.label_set}
        return lowered.get(text.lower())

    def fewshot(self, condition: str, config: FewShotConfig, k: int | None = None) -> ConditionResult:
        """k demonstrations from the config's training pool; with orders > 1, the mean over orders."""
        if config.calibrate and not self.classification:
            raise FtpeError("--calibrate divides out the label bias of label scoring; with --metric the answer is "
                            "generated, so nothing would be calibrated. Leave out --calibrate or --metric.")
        if config.verbalizer:
            return self._verbalized(condition, config, k)
        k = config.k if k is None else k
        overlap, train_overlap = overlapping(config.train, self.eval_data)
        pool = [i for i in range(len(config.train)) if config.allow_overlap or i not in train_overlap]
        if k > len(pool):
            removed = " after removing the ones that are also in the eval set" if train_overlap and \
                not config.allow_overlap else ""
            raise FtpeError(f"--k {k} is more than the {len(pool)} examples in the training pool{removed}; "
                            f"use --k {len(pool)} or fewer.")
        embed = self._embedder()
        pool_seconds = 0.0
        if config.select == "similar" and k:  # the one-off cost, reported apart from the per-query cost
            pool_started = time.perf_counter()
            embed([config.train.texts[i] for i in pool])
            pool_seconds = time.perf_counter() - pool_started
        started = time.perf_counter()
        demos = select_demos(config, self.eval_data, pool, k, embed=embed)
        runs = []
        for order in range(config.orders):
            ordered = demos if order == 0 else reorder(demos, config.seed + order)
            runs.append(self._fewshot_once(config, ordered))
            if runs[-1].interrupted:  # the stop button: no further orders
                break
        first = runs[0]
        interrupted = any(run.interrupted for run in runs)
        spec = f"{config.name} (k={k}, {config.select}{', calibrated' if config.calibrate else ''})"
        result = self._result(condition, "fewshot", spec, first.predictions,
                              first.predictions, time.perf_counter() - started, first.prompt_tokens,
                              first.example_prompt, samples=first.samples, interrupted=interrupted,
                              overlap=len(overlap), k=k, pool_embedding_seconds=pool_seconds,
                              **({"tokens_generated": first.new_tokens} if first.new_tokens else {}))
        if config.orders > 1 and not interrupted:
            per_order = [self._result(condition, "fewshot", "", run.predictions, run.predictions, 0, [], "")
                         for run in runs]
            result.order_accuracies = [r.accuracy for r in per_order]
            result.samples = [list(column) for column in zip(*(run.predictions for run in runs), strict=True)]
            result.seconds /= config.orders  # latency of one pass, comparable with other conditions
        return result

    def _verbalized(self, condition: str, config: FewShotConfig, k: int | None) -> ConditionResult:
        """Label words: the prompt (demonstrations and scored answers) uses each label's word; predictions are
        mapped back to the labels, so the result compares with every other condition on the same references."""
        if not self.classification:
            raise FtpeError("Label words (a verbalizer) apply to scoring labels, not to generated text with --metric.")
        words, back = config.verbalizer, {word: label for label, word in config.verbalizer.items()}
        worded = copy.copy(self)
        worded.eval_data = verbalized(self.eval_data, words)
        inner = worded.fewshot(condition, replace(config, train=verbalized(config.train, words), verbalizer=None), k)
        predictions = [back.get(p, p) for p in inner.predictions]
        mapped = [[back.get(p, p) for p in draws] for draws in inner.samples] if inner.samples else None
        return replace(inner, references=self.eval_data.labels, predictions=predictions, outputs=predictions,
                       label_set=self.eval_data.label_set, samples=mapped,
                       scores=[float(p == r) for p, r in zip(predictions, self.eval_data.labels, strict=True)],
                       spec=f"{inner.spec[:-1]}, words {'/'.join(words.values())})")

    def _classifier(self, condition: str, adapter: Adapter) -> ConditionResult:
        """A probe or a head: argmax over its classes (consistency 1.0 by construction); ``--samples`` draws
        from the head's own distribution instead."""
        from ..adapters.heads import class_ids, predict

        if not self.classification:
            raise FtpeError(f"Adapter {adapter.name!r} is a classifier ({adapter.method}); score it on labels, "
                            "without --metric.")
        class_ids(self.eval_data.labels, adapter.head.label_set, "--eval")  # an eval label it cannot output
        started = time.perf_counter()
        texts = [adapter.template.prompt(self._row(row)) for row in self.eval_data.rows]
        probabilities = predict(self.handle.model, self.handle.tokenizer, adapter.head, texts, self.batch_size)
        predictions = [adapter.head.label_set[i] for i in probabilities.argmax(axis=1)]
        samples = _head_draws(probabilities, adapter.head.label_set, self.samples, self.seed)
        tokens = [len(ids) for ids in self.handle.tokenizer(texts)["input_ids"]]
        result = self._result(condition, "adapter", f"{adapter.name} ({adapter.method})", predictions, predictions,
                              time.perf_counter() - started, tokens, texts[0], samples=samples,
                              trainable_params=adapter.trainable_params, train_seconds=adapter.train_seconds,
                              classifier=True)
        result.deterministic = samples is None
        return result

    def _embedder(self):
        """Embeddings by the model now active, cached per text for the session under the model's key (which
        changes at every load, so vectors of a freed model are never reused), and in the run store under the
        weights' fingerprint: every configuration, k and kernel share one pass over a pool."""
        cache = self.handle.embedding_cache.setdefault(self.handle.model_key, {})

        def embed(texts: list[str]) -> np.ndarray:
            missing = [text for text in dict.fromkeys(texts) if text not in cache]
            if missing:  # the run store may hold them from an earlier kernel
                cache.update(self.handle.stored_embeddings(missing))
                missing = [text for text in missing if text not in cache]
            if missing:
                vectors = mean_pooled_embeddings(self.handle.model, self.handle.tokenizer, missing, self.batch_size)
                computed = dict(zip(missing, vectors, strict=True))
                cache.update(computed)
                self.handle.keep_embeddings(computed)
            return np.stack([cache[text] for text in texts])

        return embed

    def _shots(self, config: FewShotConfig, chosen: list[int]) -> list[str]:
        return [config.template.demo(self._row(config.train.rows[i]), config.train.labels[i]) for i in chosen]

    def _calibration(self, config: FewShotConfig, demos: list[list[int]]) -> tuple[np.ndarray | None, float]:
        """``log p_cf`` per eval example (one estimate per distinct set of demonstrations: with ``random`` and
        ``balanced`` one for all, with ``similar`` one per query), and what it cost; None when interrupted."""
        template = config.template
        blanked = [name for name in template_fields(template.template) if name in self.eval_data.rows[0]]
        prompts = list(dict.fromkeys(tuple(chosen) for chosen in demos))
        contexts = [assemble(self._instructions(template), self._shots(config, list(chosen)),
                             template.query(self._row(dict.fromkeys(blanked, blank))))
                    for chosen in prompts for blank in CONTENT_FREE]
        continuations = [template.continuation(label) for label in self.eval_data.label_set]
        scored = label_logprobs(self.handle.model, self.handle.tokenizer, contexts, continuations, self.batch_size,
                                share=self._share())
        if scored.interrupted:
            return None, scored.seconds
        bias = content_free_bias(scored.normalised(self.eval_data.label_set, self.norm))
        index = {chosen: row for row, chosen in enumerate(prompts)}
        return bias[[index[tuple(chosen)] for chosen in demos]], scored.seconds

    def _instructions(self, template: ExampleTemplate) -> str:
        """The instruction paragraphs with their ``{fields}`` filled from the notebook, like every template."""
        return fill(template.instructions, self.namespace)

    def _fewshot_once(self, config: FewShotConfig, demos: list[list[int]]) -> Scored:
        template = config.template
        instructions = self._instructions(template)
        contexts = [assemble(instructions, self._shots(config, chosen), template.query(self._row(row)))
                    for row, chosen in zip(self.eval_data.rows, demos, strict=True)]
        if self.classification:
            bias, calibration_seconds = self._calibration(config, demos) if config.calibrate else (None, 0.0)
            scored = self._classify(contexts, template, bias=bias)
            scored.seconds += calibration_seconds  # the calibration pass is part of the condition's cost
            scored.interrupted = scored.interrupted or (config.calibrate and bias is None)
            scored.example_prompt = contexts[0] + template.continuation("<label>")
            return scored
        run = self._generate(contexts, raw=True)
        return Scored([self._answer(samples[0]) for samples in run.outputs], None, run.seconds, run.prompt_tokens,
                      contexts[0], interrupted=run.interrupted, new_tokens=run.new_tokens)

    def adapter(self, condition: str, adapter: Adapter, kind: str = "adapter") -> ConditionResult:
        """Score the active model on exactly the text format ``adapter`` was trained on."""
        if adapter.head is not None and kind == "adapter":
            return self._classifier(condition, adapter)
        if adapter.template is None:
            raise FtpeError(f"Adapter {adapter.name!r} has no template (a plain peft folder): compare it with "
                            "'base TEMPLATE'-style conditions or retrain it with %%finetune.")
        contexts, continuations, add_special = scoring_inputs(
            self.handle.tokenizer, adapter.template, [self._row(row) for row in self.eval_data.rows],
            self.eval_data.label_set, adapter.chat)
        spec = adapter.name if kind == "adapter" else f"base model, {adapter.name}'s format"
        extra = {"trainable_params": adapter.trainable_params, "train_seconds": adapter.train_seconds,
                 "train_tokens": adapter.train_tokens} if kind == "adapter" else {}
        if self.classification:
            scored = self._classify(contexts, None, add_special, continuations)
            return self._result(condition, kind, spec, scored.predictions, scored.predictions, scored.seconds,
                                scored.prompt_tokens,
                                contexts[0] + continuations[0].replace(self.eval_data.label_set[0], "<label>"),
                                samples=scored.samples, interrupted=scored.interrupted, **extra)
        run = self._generate(contexts, raw=True)
        predictions = [self._answer(samples[0]) for samples in run.outputs]
        return self._result(condition, kind, spec, predictions, [s[0] for s in run.outputs], run.seconds,
                            run.prompt_tokens, contexts[0], interrupted=run.interrupted,
                            tokens_generated=run.new_tokens, **extra)


def _head_draws(probabilities: np.ndarray, label_set: list[str], samples: int, seed: int) -> list[list[str]] | None:
    if samples <= 1:
        return None
    rng = np.random.default_rng(seed)
    return [[label_set[rng.choice(len(label_set), p=p / p.sum())] for _ in range(samples)] for p in probabilities]
