"""``%%finetune``: train an adapter (or a copy) of the session's model with transformers' Trainer.

The training text is the same template ``%%fewshot`` uses, filled with the label, so a prompt and a
fine-tune see exactly the same words. The loss is on the answer only by default. Validation runs
the evaluation engine's label-likelihood accuracy, the best state is kept in memory and restored at
the end, and the kernel's stop button ends training at the next step boundary with the adapter as
of the last finished step.
"""

from __future__ import annotations

import copy
import random
import signal
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any

import torch
from transformers import DataCollatorForSeq2Seq, PrinterCallback, Trainer, TrainerCallback, TrainingArguments

from .adapters import COPY_METHODS, METHODS, Adapter, detach, peft_state
from .data import Examples
from .errors import FtpeError
from .prompts import ExampleTemplate, formatted_pair, scoring_inputs
from .scoring import label_logprobs

DEFAULT_LR = {"lora": 1e-3, "full": 3e-5, "prompt-tuning": 3e-2, "ia3": 3e-3, "unfreeze": 5e-5}


@dataclass
class FinetuneOptions:
    method: str = "lora"
    epochs: float | None = None
    max_steps: int | None = None
    lr: float | None = None
    batch_size: int = 8
    grad_accum: int = 1
    max_len: int = 256
    seed: int = 0
    loss: str = "answer"
    raw: bool = False
    eval_steps: int | None = None
    early_stopping: int | None = None
    warmup: float = 0.1
    logging_steps: int = 1
    rank: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: str | None = None
    virtual_tokens: int = 20
    init_text: str | None = None
    unfreeze_groups: int = 4
    unfreeze_every: int | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise FtpeError(f"--method must be one of {', '.join(METHODS)}, not {self.method!r}.")
        if self.lr is not None and self.lr <= 0:
            raise FtpeError(f"--lr must be above 0 (got {self.lr}); try {DEFAULT_LR[self.method]}.")
        if self.loss not in ("answer", "all"):
            raise FtpeError("--loss must be 'answer' or 'all'.")
        if self.batch_size < 1 or self.grad_accum < 1 or (self.max_steps is not None and self.max_steps < 1):
            raise FtpeError("--batch-size, --grad-accum and --max-steps must be at least 1.")
        if self.epochs is not None and self.epochs <= 0:
            raise FtpeError("--epochs must be above 0.")

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.method]


def build_features(tokenizer, template: ExampleTemplate, data: Examples, chat: bool, loss: str,
                   max_len: int) -> list[dict]:
    """Token ids and labels (-100 where no loss is taken), the context left-truncated to fit ``max_len``."""
    features = []
    for row, label in zip(data.rows, data.labels, strict=True):
        context, answer, add_special = formatted_pair(tokenizer, template, row, label, chat)
        context_ids = tokenizer(context, add_special_tokens=add_special)["input_ids"]
        answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        room = max_len - len(answer_ids)
        if room < 1:
            raise FtpeError(f"--max-len {max_len} leaves no room for the prompt (the answer alone is "
                            f"{len(answer_ids)} tokens); raise --max-len.")
        context_ids = context_ids[-room:]
        ids = context_ids + answer_ids
        labels = ([-100] * len(context_ids) if loss == "answer" else list(context_ids)) + answer_ids
        features.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels})
    return features


def check_max_len(tokenizer, template: ExampleTemplate, chat: bool, max_len: int, label_set: list[str]) -> None:
    """Refuse a --max-len shorter than the template's own text plus an answer, before any training."""
    empty_row = {field: "" for field in _fields(template)}
    longest = max(label_set, key=len)
    context, answer, add_special = formatted_pair(tokenizer, template, empty_row, longest, chat)
    needed = len(tokenizer(context, add_special_tokens=add_special)["input_ids"]) + \
        len(tokenizer(answer, add_special_tokens=False)["input_ids"]) + 1
    if needed > max_len:
        raise FtpeError(f"--max-len {max_len} is shorter than the template's prompt and answer ({needed} tokens "
                        "with empty fields); raise --max-len.")


def _fields(template: ExampleTemplate) -> list[str]:
    from .templating import template_fields

    return [name for name in template_fields(template.instructions + "\n" + template.template) if name != "label"]


def peft_config_for(options: FinetuneOptions, session):
    from peft import IA3Config, LoraConfig, PromptTuningConfig, PromptTuningInit, TaskType

    targets = None
    if options.target_modules:
        targets = options.target_modules if options.target_modules == "all-linear" else \
            [name.strip() for name in options.target_modules.split(",")]
    if options.method == "lora":
        return LoraConfig(task_type=TaskType.CAUSAL_LM, r=options.rank, lora_alpha=options.alpha,
                          lora_dropout=options.dropout, target_modules=targets)
    if options.method == "ia3":
        return IA3Config(task_type=TaskType.CAUSAL_LM, target_modules=targets,
                         feedforward_modules=[] if targets else None)
    init_text = options.init_text
    return PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=options.virtual_tokens,
                              prompt_tuning_init=PromptTuningInit.TEXT if init_text else PromptTuningInit.RANDOM,
                              prompt_tuning_init_text=init_text, tokenizer_name_or_path=session.location)


def layer_groups(model, groups: int) -> list[list[torch.nn.Module]]:
    """The model's transformer blocks (its longest ModuleList) split into ``groups``, top group first."""
    lists = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList)]
    if not lists:
        raise FtpeError("--method unfreeze needs a model with a list of transformer layers.")
    layers = list(max(lists, key=len))
    groups = max(1, min(groups, len(layers)))
    size = -(-len(layers) // groups)
    chunks = [layers[i:i + size] for i in range(0, len(layers), size)]
    return list(reversed(chunks))


class _Unfreeze(TrainerCallback):
    """Gradual unfreezing: the head and top group train first; one more group every N steps.

    Every parameter is in the optimizer from the start; frozen ones simply get no gradient, which
    AdamW skips, so unfreezing needs no new optimizer.
    """

    def __init__(self, model, groups: list[list[torch.nn.Module]], every: int) -> None:
        self.model, self.groups, self.every = model, groups, max(1, every)

    def _apply(self, open_groups: int) -> None:
        for index, group in enumerate(self.groups):
            for layer in group:
                layer.requires_grad_(index < open_groups)

    def on_train_begin(self, args, state, control, **kwargs):
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        for parameter in self.model.get_output_embeddings().parameters():
            parameter.requires_grad_(True)
        for module in self.model.modules():  # final norm: the last non-layer module with weights named *norm
            if type(module).__name__.lower().endswith("norm") and module not in set().union(
                    *[set(layer.modules()) for group in self.groups for layer in group]):
                module.requires_grad_(True)
        self._apply(1)

    def on_step_begin(self, args, state, control, **kwargs):
        self._apply(1 + state.global_step // self.every)


class _Supervisor(TrainerCallback):
    """Validation accuracy, best-state tracking, early stopping and stopping at a step boundary."""

    def __init__(self, view, task_metric, patience: int | None, snapshot, stop_flag: threading.Event) -> None:
        self.view, self.task_metric, self.patience = view, task_metric, patience
        self.snapshot, self.stop_flag = snapshot, stop_flag
        self.best: float | None = None
        self.best_state = None
        self.bad_evals = 0
        self.finished_steps = 0

    def on_step_end(self, args, state, control, **kwargs):
        self.finished_steps = state.global_step
        if self.stop_flag.is_set():
            control.should_training_stop = True
        return control

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        model = kwargs["model"]
        entry = {"step": state.global_step, "eval_loss": (metrics or {}).get("eval_loss")}
        score = None
        if self.task_metric is not None:
            was_training = model.training
            model.eval()
            score = self.task_metric(model)
            model.train(was_training)
            entry["eval_accuracy"] = score
        self.view.record(entry)
        value = score if score is not None else -(entry["eval_loss"] or 0.0)
        if self.best is None or value > self.best:
            self.best, self.best_state, self.bad_evals = value, self.snapshot(), 0
        else:
            self.bad_evals += 1
            if self.patience and self.bad_evals >= self.patience:
                control.should_training_stop = True
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = dict(logs or {})
        if "loss" in logs or "learning_rate" in logs:
            self.view.record({"step": state.global_step, "loss": logs.get("loss"),
                              "learning_rate": logs.get("learning_rate"), "epoch": logs.get("epoch")})


class _CountingCollator:
    """Dynamic padding (transformers' collator) that also counts the real tokens it batches."""

    def __init__(self, collator) -> None:
        self.collator = collator
        self.tokens = 0

    def __call__(self, features):
        batch = self.collator(features)
        self.tokens += int(batch["attention_mask"].sum())
        return batch


class _StopOnInterrupt:
    """While training, the kernel's stop button (SIGINT) asks for a stop at the next step boundary."""

    def __init__(self, flag: threading.Event) -> None:
        self.flag = flag
        self.previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, lambda *_: self.flag.set())
        return self

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        return False


def split_validation(data: Examples, fraction: float, seed: int) -> tuple[Examples, Examples]:
    if not 0 < fraction < 1:
        raise FtpeError("--val-split must be between 0 and 1, e.g. 0.1.")
    order = list(range(len(data)))
    random.Random(seed).shuffle(order)
    size = max(1, round(fraction * len(data)))
    return data.subset(order[size:]), data.subset(order[:size])


def train_adapter(session, name: str, template: ExampleTemplate, train: Examples, val: Examples | None,
                  options: FinetuneOptions, view) -> Adapter:
    """Train one adapter on the session's base model and return it (the base model is left as it was)."""
    if not template.has_label:
        raise FtpeError("The template has no {label}: there is nothing to learn. End it with the answer, "
                        "e.g. Review: {text}\\nSentiment: {label}")
    if len(train) < 4:
        raise FtpeError(f"The training set has {len(train)} example(s); fine-tuning needs at least 4.")
    session.require_model()
    tokenizer = session.tokenizer
    chat = not options.raw and bool(getattr(tokenizer, "chat_template", None))
    check_max_len(tokenizer, template, chat, options.max_len, train.label_set)
    train_features = build_features(tokenizer, template, train, chat, options.loss, options.max_len)
    val_features = build_features(tokenizer, template, val, chat, options.loss, options.max_len) if val else None
    session.use("base")
    torch.manual_seed(options.seed)
    if options.method in COPY_METHODS:
        model = copy.deepcopy(session.base_model)
        model.requires_grad_(True)
    else:
        from peft import get_peft_model

        model = get_peft_model(session.base_model, peft_config_for(options, session))
    model.train()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)

    task_metric = _accuracy_metric(session, template, val, chat) if val is not None else None

    def snapshot():
        if options.method in COPY_METHODS:
            return {k: v.detach().clone() for k, v in model.state_dict().items()}
        return peft_state(model)

    steps_per_epoch = -(-len(train_features) // (options.batch_size * options.grad_accum))
    total_steps = options.max_steps or max(1, round((options.epochs or 3) * steps_per_epoch))
    eval_steps = options.eval_steps or max(1, min(steps_per_epoch, total_steps // 4 or 1))
    right_padding = copy.copy(tokenizer)
    right_padding.padding_side = "right"
    collator = _CountingCollator(DataCollatorForSeq2Seq(right_padding, padding=True, label_pad_token_id=-100))
    stop_flag = threading.Event()
    supervisor = _Supervisor(view, task_metric, options.early_stopping, snapshot, stop_flag)
    callbacks: list[TrainerCallback] = [supervisor]
    if options.method == "unfreeze":
        groups = layer_groups(model, options.unfreeze_groups)
        callbacks.append(_Unfreeze(model, groups, options.unfreeze_every or max(1, total_steps // len(groups))))
    view.start(total_steps=total_steps, collator=collator, method=options.method, trainable=trainable)
    callbacks.append(view.callback())
    on_gpu = session.device == "cuda"
    with tempfile.TemporaryDirectory(prefix="ftpe-train-") as output_dir:
        args = TrainingArguments(
            output_dir=output_dir, per_device_train_batch_size=options.batch_size,
            per_device_eval_batch_size=options.batch_size, gradient_accumulation_steps=options.grad_accum,
            learning_rate=options.learning_rate, lr_scheduler_type="linear", warmup_steps=options.warmup,
            max_steps=total_steps, logging_steps=options.logging_steps, eval_strategy="steps" if val else "no",
            eval_steps=eval_steps, save_strategy="no", report_to="none", disable_tqdm=True, seed=options.seed,
            train_sampling_strategy="group_by_length", remove_unused_columns=False, use_cpu=not on_gpu,
            bf16=on_gpu and torch.cuda.is_bf16_supported(), dataloader_pin_memory=on_gpu)
        from datasets import Dataset

        trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_list(train_features),
                          eval_dataset=Dataset.from_list(val_features) if val_features else None,
                          data_collator=collator, callbacks=callbacks)
        trainer.remove_callback(PrinterCallback)  # the live view shows the logs; no dicts printed per step
        started = time.perf_counter()
        interrupted = False
        try:
            with _StopOnInterrupt(stop_flag):
                trainer.train()
        except KeyboardInterrupt:
            interrupted = True
        except torch.OutOfMemoryError:
            detach(model, session.base_model)
            del trainer, model
            from .generation import free_accelerator_memory

            free_accelerator_memory()
            raise FtpeError(f"CUDA out of memory while training with --batch-size {options.batch_size}. Retry with "
                            f"--batch-size {max(1, options.batch_size // 2)} --grad-accum {options.grad_accum * 2}, "
                            "a shorter --max-len, or --method lora; the model is still loaded.") from None
        except BaseException:
            detach(model, session.base_model)  # never leave adapter layers inside the base model
            raise
        seconds = time.perf_counter() - started
    interrupted = interrupted or stop_flag.is_set()
    if supervisor.best_state is not None and not interrupted:
        _restore(model, supervisor.best_state, options.method)
    model.eval()
    adapter = Adapter(name=name, method=options.method, template=template, chat=chat, label_set=train.label_set,
                      input_col=train.input_col, trainable_params=trainable, train_seconds=seconds,
                      best_metric=supervisor.best if task_metric is not None else None,
                      interrupted_at=supervisor.finished_steps if interrupted else None,
                      steps=supervisor.finished_steps, history=list(view.records))
    if options.method in COPY_METHODS:
        model.requires_grad_(False)
        adapter.model = model
    else:
        adapter.peft_config = model.peft_config["default"]
        adapter.peft_config.inference_mode = True
        adapter.state = peft_state(model)
        detach(model, session.base_model)
    session.add_adapter(adapter)
    view.finish(adapter)
    return adapter


def _restore(model, state: dict[str, torch.Tensor], method: str) -> None:
    if method in COPY_METHODS:
        model.load_state_dict(state)
    else:
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, state)


def _accuracy_metric(session, template: ExampleTemplate, val: Examples, chat: bool):
    """Validation accuracy by label likelihood, on the same text format as training."""
    tokenizer = session.tokenizer
    contexts, continuations, add_special = scoring_inputs(tokenizer, template, val.rows, val.label_set, chat)

    def accuracy(model: Any) -> float:
        scored = label_logprobs(model, tokenizer, contexts, continuations, session.config.batch_size,
                                add_special_tokens=add_special)
        predictions = [val.label_set[i] for i in scored.logprobs.argmax(axis=1)]
        return sum(p == r for p, r in zip(predictions, val.labels, strict=True)) / len(val)

    return accuracy
