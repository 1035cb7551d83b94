"""Training one adapter (or a copy) of the session's model with transformers' ``Trainer``.

The work is in two phases so that a bad input never touches the model: :func:`prepare` checks
the template, the data and ``--max-len`` and tokenises everything; :func:`train_adapter` then
builds the trainable model, runs ``Trainer`` and returns an :class:`Adapter` with the base model
left as it was. Validation uses the evaluation engine's label-likelihood accuracy, the best state
is kept in memory and restored at the end, and the kernel's stop button ends training at the next
step boundary with the adapter as of the last finished step.
"""

from __future__ import annotations

import copy
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from transformers import DataCollatorForSeq2Seq, PrinterCallback, Trainer, TrainerCallback, TrainingArguments

from ..adapters.registry import Adapter, detach, peft_state
from ..data.examples import Examples
from ..errors import FtpeError
from ..inference.scoring import label_logprobs
from ..model.memory import out_of_memory
from ..model.scoped import global_rngs_kept, quiet_library_notices, seeded
from ..prompting.templates import ExampleTemplate, scoring_inputs
from .callbacks import CountingCollator, Reporter, StopOnInterrupt, Supervisor, Unfreeze, layer_groups
from .distributed import distributed_world, my_share, strategy_arguments, summed, summed_value
from .features import build_features, check_max_len
from .methods import COPY_METHODS, build_trainable, check_targets
from .observers import Observers, TrainingHistory, TrainingObserver, TrainingPlan
from .options import FinetuneOptions
from .validation import ValidationMetric, ValidationSchedule, ValidationScore, intermediate_positions


@contextmanager
def base_kept(base_model) -> Iterator[None]:
    """Whatever happens while training, the base leaves as it came: its mode, its gradient flags, and no
    attribute that peft hangs on it (the adapter layers themselves are taken off by ``detach``)."""
    was_training = base_model.training
    grad_flags = [parameter.requires_grad for parameter in base_model.parameters()]
    had_peft_config = hasattr(base_model, "peft_config")
    try:
        yield
    finally:
        base_model.train(was_training)
        for parameter, flag in zip(base_model.parameters(), grad_flags, strict=True):
            parameter.requires_grad_(flag)
        if not had_peft_config and "peft_config" in vars(base_model):
            del base_model.peft_config


@dataclass
class TrainingJob:
    """One run, checked and tokenised before the base model is touched."""

    name: str
    template: ExampleTemplate
    train: Examples
    val: Examples | None
    options: FinetuneOptions
    chat: bool
    train_features: list[dict]
    val_features: list[dict] | None
    strategy: str = "ddp"  # in worker processes: ddp, or fsdp (sharded)

    @property
    def total_steps(self) -> int:
        options = self.options
        return options.max_steps or max(1, round(options.train_epochs * self.steps_per_epoch))

    @property
    def steps_per_epoch(self) -> int:
        return -(-len(self.train_features) // (self.options.batch_size * self.options.grad_accum))



def validation_plan(job: TrainingJob) -> dict[str, Any]:
    """The Supervisor's schedule and the subsample its checks between steps score (see :mod:`.validation`)."""
    if job.val is None:
        return {}
    positions = intermediate_positions(len(job.val), job.options.seed)
    checked = len(positions) if positions is not None else len(job.val)
    schedule = ValidationSchedule(job.total_steps, job.options.eval_steps, checked,
                                  job.options.batch_size * job.options.grad_accum)
    return {"schedule": schedule, "positions": positions}


def check_job(name: str, template: ExampleTemplate, train: Examples) -> None:
    """What every method needs: a name that is not ``base``, a label to learn, and enough examples."""
    if name == "base":
        raise FtpeError("'base' names the model without adapters; choose another --name.")
    if not template.has_label:
        raise FtpeError("The template has no {label}: there is nothing to learn. End it with the answer, "
                        "e.g. Review: {text}\\nSentiment: {label}")
    if len(train) < 4:
        raise FtpeError(f"The training set has {len(train)} example(s); fine-tuning needs at least 4.")


def prepare(tokenizer, name: str, template: ExampleTemplate, train: Examples, val: Examples | None,
            options: FinetuneOptions) -> TrainingJob:
    """Every check that can fail on the user's input, before any training starts."""
    check_job(name, template, train)
    chat = not options.raw and bool(getattr(tokenizer, "chat_template", None))
    check_max_len(tokenizer, template, chat, options.max_len, train.label_set)
    train_features = build_features(tokenizer, template, train, chat, options.loss, options.max_len)
    val_features = build_features(tokenizer, template, val, chat, options.loss, options.max_len) if val else None
    return TrainingJob(name, template, train, val, options, chat, train_features, val_features)


def _accuracy_metric(tokenizer, job: TrainingJob, batch_size: int) -> ValidationMetric:
    """Validation accuracy by label likelihood, on the same text format as training, and the loss from the same
    pass (the correct answer's negative log-likelihood per token). In worker processes each rank scores its
    share and the sums are reduced: one score, the same on every rank."""
    def score(model: Any, positions: list[int] | None) -> ValidationScore:
        chosen = job.val.subset(positions) if positions is not None else job.val
        val = chosen.subset(my_share(len(chosen)))
        correct, loss = 0, 0.0
        if len(val):
            contexts, continuations, add_special = scoring_inputs(tokenizer, job.template, val.rows, val.label_set,
                                                                  job.chat)
            scored = label_logprobs(model, tokenizer, contexts, continuations, batch_size,
                                    add_special_tokens=add_special)
            if scored.interrupted:  # the stop button during validation: drop this validation, do not score a part
                raise KeyboardInterrupt
            index = {label: i for i, label in enumerate(val.label_set)}
            truth = [index[label] for label in val.labels]
            correct = int(sum(scored.logprobs.argmax(axis=1) == truth))
            per_token = scored.logprobs / scored.label_token_counts
            loss = float(-sum(per_token[row, column] for row, column in enumerate(truth)))
        return ValidationScore(summed(correct) / len(chosen), summed_value(loss) / len(chosen), len(chosen))

    return score


def _snapshot(model, method: str) -> dict[str, torch.Tensor]:
    if method in COPY_METHODS:
        return {k: v.detach().clone() for k, v in model.state_dict().items()}
    return peft_state(model)


def _restore(model, state: dict[str, torch.Tensor], method: str) -> None:
    if method in COPY_METHODS:
        model.load_state_dict(state)
    else:
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, state)


def _trainer(model, tokenizer, job: TrainingJob, device: str, output_dir: str,
             callbacks: list[TrainerCallback], collator: CountingCollator) -> Trainer:
    from datasets import Dataset

    options, on_gpu = job.options, device.startswith("cuda")
    world = distributed_world()
    args = TrainingArguments(
        output_dir=output_dir, per_device_train_batch_size=options.batch_size // world,
        per_device_eval_batch_size=options.batch_size, gradient_accumulation_steps=options.grad_accum,
        learning_rate=options.learning_rate, lr_scheduler_type="linear", warmup_steps=options.warmup,
        max_steps=job.total_steps, logging_steps=options.logging_steps, eval_strategy="no", save_strategy="no",
        report_to="none", disable_tqdm=True, seed=options.seed,
        train_sampling_strategy="group_by_length", remove_unused_columns=False, use_cpu=not on_gpu,
        bf16=on_gpu and torch.cuda.is_bf16_supported(), dataloader_pin_memory=on_gpu,
        ddp_backend=("nccl" if on_gpu else "gloo") if world > 1 else None, **strategy_arguments(job.strategy))
    one_device(args)
    # validation is the Supervisor's (one pass for accuracy and loss, sized to the run): no evaluation loop here
    trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_list(job.train_features),
                      data_collator=collator, callbacks=callbacks)
    trainer.remove_callback(PrinterCallback)  # observers show the logs; no dicts printed per step
    return trainer


def one_device(args: TrainingArguments) -> TrainingArguments:
    """Train on the session's device only. ``Trainer`` wraps the model in ``nn.DataParallel`` when a process sees
    several GPUs, while every other call of the session runs on one: several devices are ``--nproc``'s job."""
    if args.n_gpu > 1:
        args._n_gpu = 1
    return args


def _run(trainer: Trainer, supervisor: Supervisor, model, base_model, batch_size: int, grad_accum: int) -> bool:
    """Train; True when the stop button (or an observer's KeyboardInterrupt) ended it early."""
    stop_flag = supervisor.stop_flag
    try:
        with StopOnInterrupt(stop_flag, supervisor):
            trainer.train()
    except KeyboardInterrupt:
        return True
    except torch.OutOfMemoryError:
        detach(model, base_model)
        raise out_of_memory(f"training with --batch-size {batch_size}",
                            f"--batch-size {max(1, batch_size // 2)} --grad-accum {grad_accum * 2}, a shorter "
                            "--max-len, or --method lora") from None
    except BaseException:
        detach(model, base_model)  # never leave adapter layers inside the base model
        raise
    return stop_flag.is_set()


def _current_adapter(model, job: TrainingJob, trainable: int, supervisor: Supervisor) -> Adapter:
    """The adapter as the model is now (a checkpoint on disk, or the final one): nothing detached or frozen."""
    adapter = Adapter(name=job.name, method=job.options.method, template=job.template, chat=job.chat,
                      label_set=job.train.label_set, input_col=job.train.input_col, trainable_params=trainable,
                      best_metric=supervisor.best if job.val is not None else None, steps=supervisor.finished_steps)
    if job.options.method in COPY_METHODS:
        adapter.model = model
    else:
        adapter.peft_config = copy.deepcopy(model.peft_config["default"])
        adapter.peft_config.inference_mode = True
        adapter.state = peft_state(model)
    return adapter


def _adapter(model, job: TrainingJob, base_model, trainable: int, seconds: float, supervisor: Supervisor,
             interrupted: bool, history: TrainingHistory) -> Adapter:
    """The finished run as an adapter; peft layers are taken off the base, a trained copy is kept whole."""
    if supervisor.best_state is not None and not interrupted:
        _restore(model, supervisor.best_state, job.options.method)
    model.eval()
    adapter = _current_adapter(model, job, trainable, supervisor)
    adapter.train_seconds, adapter.history = seconds, list(history.records)
    adapter.interrupted_at = supervisor.finished_steps if interrupted else None
    if job.options.method in COPY_METHODS:
        model.requires_grad_(False)
    else:
        detach(model, base_model)
    return adapter


def train_adapter(base_model, tokenizer, location: str, device: str, job: TrainingJob,
                  observers: list[TrainingObserver] = (), eval_batch_size: int = 32,
                  stop_requested: Callable[[], bool] | None = None) -> Adapter:
    """Train ``job`` on ``base_model`` (which must have no adapter attached) and return the adapter.

    ``stop_requested`` is asked at every step whether to stop (a worker's stop file), besides the stop button."""
    options = job.options
    check_targets(base_model, options)
    history = TrainingHistory()
    observer = Observers([history, *observers])
    with base_kept(base_model), global_rngs_kept(device), quiet_library_notices():
        with seeded(options.seed, device):
            model = build_trainable(base_model, options, location)
        model.train()
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        task_metric = _accuracy_metric(tokenizer, job, eval_batch_size) if job.val is not None else None
        right_padding = copy.copy(tokenizer)
        right_padding.padding_side = "right"
        collator = CountingCollator(DataCollatorForSeq2Seq(right_padding, padding=True, label_pad_token_id=-100))
        stop_flag = threading.Event()
        supervisor = Supervisor(observer, task_metric, options.early_stopping,
                                lambda: _snapshot(model, options.method), stop_flag,
                                lambda: _current_adapter(model, job, trainable, supervisor), stop_requested,
                                **validation_plan(job), restore=lambda state: _restore(model, state, options.method))
        callbacks: list[TrainerCallback] = [supervisor, Reporter(observer, collator), supervisor.checks]
        if options.method == "unfreeze":
            groups = layer_groups(model, options.unfreeze_groups)
            every = options.unfreeze_every or max(1, job.total_steps // len(groups))
            callbacks.append(Unfreeze(model, groups, every))
        observer.start(TrainingPlan(job.total_steps, options.method, trainable))
        with tempfile.TemporaryDirectory(prefix="ftpe-train-") as output_dir:
            trainer = _trainer(model, tokenizer, job, device, output_dir, callbacks, collator)
            started = time.perf_counter()
            interrupted = _run(trainer, supervisor, model, base_model, options.batch_size, options.grad_accum)
            seconds = time.perf_counter() - started
        adapter = _adapter(model, job, base_model, trainable, seconds, supervisor, interrupted, history)
        adapter.train_tokens = summed(collator.tokens)  # every rank's, in worker processes: the training's cost
    observer.end(adapter)
    return adapter
