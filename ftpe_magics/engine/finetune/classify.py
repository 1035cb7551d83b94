"""Training the classifier methods: ``probe`` (logistic regression on frozen features, no ``Trainer``)
and ``head`` (a linear head through ``Trainer``, the body adapted by LoRA, frozen, or gradually unfrozen).

The text a classifier reads is the template's query, filled and cut at ``{label}``
(``Review: {text}\\nSentiment:``): the same words a prompt would show the model, without the answer.
"""

from __future__ import annotations

import copy
import tempfile
import threading
import time

import torch
from transformers import DataCollatorWithPadding, TrainerCallback

from ..adapters.heads import ClassifierModel, accuracy, class_ids, class_weights, fit_probe
from ..adapters.registry import Adapter, detach, peft_state
from ..data.examples import Examples
from ..inference.scoring import pooled_features
from ..model.scoped import global_rngs_kept, quiet_library_notices, seeded
from ..prompting.templates import ExampleTemplate
from .callbacks import CountingCollator, Reporter, Supervisor, Unfreeze, layer_groups
from .observers import Observers, TrainingHistory, TrainingObserver, TrainingPlan
from .options import FinetuneOptions
from .train import TrainingJob, _run, _trainer, base_kept, check_job, validation_plan
from .validation import ValidationMetric, ValidationScore


def query_texts(template: ExampleTemplate, data: Examples) -> list[str]:
    return [template.prompt(row) for row in data.rows]


def prepare_classifier(tokenizer, name: str, template: ExampleTemplate, train: Examples, val: Examples | None,
                       options: FinetuneOptions) -> TrainingJob:
    """Every check and the tokenised examples (ids and a class id each), before the model is touched."""
    check_job(name, template, train)
    # the classes are the task's label set (--train's with --eval's, as every prompt scores them), not only the
    # labels the examples show: 16 examples of 150 intents train a classifier that is wrong on the others, it
    # does not fail on them (a class without examples is pushed down and never predicted)
    label_set = train.label_set
    features = [_features(tokenizer, template, data, label_set, options.max_len, what) if data is not None else None
                for data, what in ((train, "--train"), (val, "--eval"))]
    return TrainingJob(name, template, train, val, options, False, features[0], features[1])


def _features(tokenizer, template: ExampleTemplate, data: Examples, label_set: list[str], max_len: int,
              what: str) -> list[dict]:
    targets = class_ids(data.labels, label_set, what)
    return [{"input_ids": ids[-max_len:], "attention_mask": [1] * len(ids[-max_len:]), "labels": int(target)}
            for ids, target in zip((tokenizer(text)["input_ids"] for text in query_texts(template, data)),
                                   targets, strict=True)]


def train_probe(model, tokenizer, job: TrainingJob, batch_size: int,
                observers: list[TrainingObserver] = ()) -> Adapter:
    """Logistic regression on the frozen model's pooled states: no gradient through the model, seconds."""
    options, label_set = job.options, job.train.label_set
    observer = Observers(list(observers))
    observer.start(TrainingPlan(1, "probe", 0))
    started = time.perf_counter()
    features = pooled_features(model, tokenizer, query_texts(job.template, job.train), options.pool, batch_size,
                               options.max_len)
    head = fit_probe(features, class_ids(job.train.labels, label_set, "--train"), label_set, options.pool, options.l2)
    seconds = time.perf_counter() - started
    best = None
    if job.val is not None:
        val_features = pooled_features(model, tokenizer, query_texts(job.template, job.val), options.pool,
                                       batch_size, options.max_len)
        best = accuracy(head, val_features, class_ids(job.val.labels, label_set, "--eval"))
        observer.evaluation({"step": 1, "eval_accuracy": best})
    trainable = head.weight.numel() + head.bias.numel()
    adapter = Adapter(name=job.name, method="probe", template=job.template, chat=False, label_set=label_set,
                      input_col=job.train.input_col, trainable_params=trainable, train_seconds=seconds,
                      best_metric=best, steps=1, head=head)
    observer.end(adapter)
    return adapter


class _HeadRun:
    """The trainable classifier of one ``head`` run, and how to snapshot and restore its best state."""

    def __init__(self, base_model, job: TrainingJob) -> None:
        options = job.options
        self.peft = None
        if options.method == "unfreeze":  # a trained copy, unfrozen group by group, with a head
            self.body = copy.deepcopy(base_model)
        elif options.freeze_body:
            self.body = base_model.requires_grad_(False)
        else:
            from .methods import lora_on

            self.peft = lora_on(base_model, options)  # LoRA layers are injected into the base itself
            self.body = base_model
        self.model = ClassifierModel(self.body, len(job.train.label_set), options.pool, options.freeze_body)
        targets = torch.tensor([feature["labels"] for feature in job.train_features])
        self.model.loss_weight = class_weights(targets, len(job.train.label_set))

    def snapshot(self) -> dict:
        state = {"head": {k: v.detach().clone() for k, v in self.model.head.state_dict().items()}}
        if self.peft is not None:
            state["peft"] = peft_state(self.peft)
        elif not self.model.freeze_body:  # a trained copy: its weights too
            state["body"] = {k: v.detach().clone() for k, v in self.body.state_dict().items()}
        return state

    def restore(self, state: dict) -> None:
        self.model.head.load_state_dict(state["head"])
        if "peft" in state:
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(self.peft, state["peft"])
        if "body" in state:
            self.body.load_state_dict(state["body"])

    def current(self, job: TrainingJob, trainable: int, supervisor: Supervisor) -> Adapter:
        """The adapter as it is now (a checkpoint on disk, or the final one): the head, and LoRA weights or the
        trained copy; nothing is detached or frozen."""
        adapter = Adapter(name=job.name, method=job.options.method, template=job.template, chat=False,
                          label_set=job.train.label_set, input_col=job.train.input_col, trainable_params=trainable,
                          best_metric=supervisor.best if job.val is not None else None,
                          steps=supervisor.finished_steps, head=self.model.as_head(job.train.label_set))
        if self.peft is not None:
            adapter.peft_config = copy.deepcopy(self.peft.peft_config["default"])
            adapter.peft_config.inference_mode = True
            adapter.state = peft_state(self.peft)
        elif not self.model.freeze_body:
            adapter.model = self.body
        return adapter

    def adapter(self, job: TrainingJob, base_model, trainable: int, seconds: float, supervisor: Supervisor,
                interrupted: bool, history: TrainingHistory) -> Adapter:
        """The finished run as an adapter: LoRA weights are taken off the base, a trained copy is frozen."""
        self.model.eval()
        adapter = self.current(job, trainable, supervisor)
        adapter.train_seconds, adapter.history = seconds, list(history.records)
        adapter.interrupted_at = supervisor.finished_steps if interrupted else None
        if self.peft is not None:
            detach(self.peft, base_model)
        elif adapter.model is not None:
            self.body.requires_grad_(False).eval()
        return adapter


def _head_metric(run: _HeadRun, tokenizer, job: TrainingJob, batch_size: int) -> ValidationMetric:
    """Validation accuracy of the head as it is now (argmax over the classes) and its cross-entropy, one pass."""
    texts = query_texts(job.template, job.val)
    targets = class_ids(job.val.labels, job.train.label_set, "--eval")

    def score(model, positions: list[int] | None) -> ValidationScore:
        chosen = list(range(len(texts))) if positions is None else positions
        features = pooled_features(run.body, tokenizer, [texts[i] for i in chosen], run.model.pool, batch_size,
                                   job.options.max_len)
        logits = run.model.as_head(job.train.label_set).logits(features)
        wanted = targets[chosen]
        loss = float(torch.nn.functional.cross_entropy(logits, wanted))
        return ValidationScore(float((logits.argmax(1) == wanted).float().mean()), loss, len(chosen))

    return score


def train_head(base_model, tokenizer, device: str, job: TrainingJob, observers: list[TrainingObserver] = (),
               eval_batch_size: int = 32) -> Adapter:
    """A linear classification head through ``Trainer``: same observers, validation, early stopping and stop
    button as the other methods; the base model leaves as it came."""
    options = job.options
    history = TrainingHistory()
    observer = Observers([history, *observers])
    with base_kept(base_model), global_rngs_kept(device), quiet_library_notices():
        with seeded(options.seed, device):
            run = _HeadRun(base_model, job)
        run.model.train()
        trainable = sum(p.numel() for p in run.model.parameters() if p.requires_grad)
        metric = _head_metric(run, tokenizer, job, eval_batch_size) if job.val is not None else None
        right_padding = copy.copy(tokenizer)
        right_padding.padding_side = "right"
        collator = CountingCollator(DataCollatorWithPadding(right_padding))
        supervisor = Supervisor(observer, metric, options.early_stopping, run.snapshot, threading.Event(),
                                lambda: run.current(job, trainable, supervisor), **validation_plan(job),
                                restore=run.restore)
        callbacks: list[TrainerCallback] = [supervisor, Reporter(observer, collator), supervisor.checks]
        if options.method == "unfreeze":
            groups = layer_groups(run.body, options.unfreeze_groups)
            every = options.unfreeze_every or max(1, job.total_steps // len(groups))
            callbacks.append(Unfreeze(run.body, groups, every))
        observer.start(TrainingPlan(job.total_steps, f"{options.method} (classification head)", trainable))
        with tempfile.TemporaryDirectory(prefix="ftpe-train-") as output_dir:
            trainer = _trainer(run.model, tokenizer, job, device, output_dir, callbacks, collator)
            started = time.perf_counter()
            interrupted = _run(trainer, supervisor, run.peft, base_model, options.batch_size, options.grad_accum)
            seconds = time.perf_counter() - started
        if supervisor.best_state is not None and not interrupted:
            run.restore(supervisor.best_state)
        adapter = run.adapter(job, base_model, trainable, seconds, supervisor, interrupted, history)
        adapter.train_tokens = collator.tokens
    observer.end(adapter)
    return adapter
