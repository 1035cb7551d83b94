"""``%%finetune``'s options: one field each, carrying its default, help text and range."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import FtpeError
from ..inference.scoring import POOLS
from ..options import check_ranges, option
from .distributed import LOCAL_ADDRESS, STRATEGIES
from .methods import METHODS, default_lr

DEFAULT_EPOCHS = 3
SEARCH_VAL_SPLIT = 0.2  # a search judges its trials on validation: held out even when --val-split is not given


@dataclass
class FinetuneOptions:
    method: str = option("lora", "lora, full (a trained copy), prompt-tuning (soft prompt), ia3, unfreeze "
                                 "(gradual unfreezing), probe (logistic regression on frozen features), head "
                                 "(a classification head, LoRA on the body).", choices=tuple(METHODS))
    val_split: float | None = option(None, "Hold out this share of --train for validation (seeded).", low=0,
                                     low_open=True, high=1, high_open=True)
    epochs: float | None = option(None, f"Passes over the training set (default {DEFAULT_EPOCHS}).", low=0,
                                 low_open=True, high=1000)
    max_steps: int | None = option(None, "Optimizer steps (overrides --epochs).", low=1, high=1_000_000)
    lr: float | None = option(None, "Peak learning rate (default per method, e.g. 1e-3 for LoRA).", low=0,
                              low_open=True)
    batch_size: int = option(8, "Examples per step.", low=1, high=4096)
    grad_accum: int = option(1, "Gradient accumulation steps.", low=1, high=1024)
    max_len: int = option(256, "Longest training sequence in tokens (prompt cut on the left).", low=2,
                         high=131072)
    seed: int = option(0, "Seed for initialisation, data order and --val-split.")
    loss: str = option("answer", "Loss on the answer only, or on all text.", choices=("answer", "all"))
    raw: bool = option(False, "Train on the raw template instead of the chat template.")
    eval_steps: int | None = option(None, "Validate every N steps (default: whenever a check keeps validation "
                                          "within a fifth of the training time; checks score a seeded 128 of the "
                                          "split, the end all of it).", low=1)
    early_stopping: int | None = option(None, "Stop after PATIENCE validations without improvement (the best "
                                              "state is restored).", low=1, high=1000, metavar="PATIENCE")
    warmup: float = option(0.1, "Warm-up: a share of the steps (<1) or a step count.", low=0)
    logging_steps: int = option(1, "Log the training loss every N steps.", low=1)
    rank: int = option(8, "LoRA rank.", low=1, high=1024)
    alpha: int = option(16, "LoRA alpha.", low=1, high=4096)
    dropout: float = option(0.05, "LoRA dropout.", low=0, high=1, high_open=True)
    target_modules: str | None = option(None, "LoRA/IA3 target modules, comma-separated or all-linear (default: "
                                              "chosen per architecture).")
    virtual_tokens: int = option(20, "Prompt tuning: number of virtual tokens.", low=1, high=1024)
    init_text: str | None = option(None, "Prompt tuning: initialise the soft prompt from this text.")
    unfreeze_groups: int = option(4, "Gradual unfreezing: layer groups.", low=1, high=1000)
    unfreeze_every: int | None = option(None, "Gradual unfreezing: steps between groups.", low=1)
    pool: str = option("mean", "probe, head: pool the last hidden states by their mean, or take the last token's.",
                       choices=POOLS)
    l2: float = option(1e-3, "probe: L2 penalty on the weights.", low=0)
    freeze_body: bool = option(False, "head: train the head alone (no LoRA on the body).")
    head: bool = option(False, "unfreeze: train a classification head instead of the language-model answer.")
    search: int | None = option(None, "Train N trials over the method's settings (Optuna: TPE sampler, median pruning "
                                      "on validation accuracy) and keep the best adapter under --name.", low=1,
                                high=500)
    cv: int = option(1, "With --search: judge each trial by K-fold cross-validation on --train (K trainings per "
                        "trial, the mean validation accuracy), then train the chosen settings once on all of "
                        "--train; 1: one --val-split.", low=1, high=20)
    space: str | None = option(None, "With --search: what to vary, e.g. \"lr=1e-5:1e-2 rank=4,8,16\" (LOW:HIGH a "
                                     "range, log-scaled for lr and l2; a,b,c choices; default per method).")
    budget_minutes: float | None = option(None, "With --search: stop the search after M minutes (the running trial "
                                                "at its next step).", low=0, low_open=True,
                                          high=10080)

    def __post_init__(self) -> None:
        check_ranges(self)
        if not self.search and (self.space is not None or self.budget_minutes is not None or self.cv > 1):
            raise FtpeError("--space, --budget-minutes and --cv shape a search; add --search N.")
        if self.cv > 1 and self.val_split:
            raise FtpeError("--cv K holds out each fold in turn; leave out --val-split (or use --cv 1).")
        if self.search:
            from .space import search_space

            search_space(self)  # a bad --space fails here, before anything trains

    @property
    def train_epochs(self) -> float:
        return self.epochs or DEFAULT_EPOCHS

    @property
    def held_out_share(self) -> float | None:
        """The share of --train held out for validation: --val-split, else the search's, else none."""
        if self.search and self.cv > 1:
            return None  # the folds are drawn inside the search
        return self.val_split or (SEARCH_VAL_SPLIT if self.search else None)

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else default_lr(self.method)


@dataclass
class LaunchOptions:
    """Where ``%%finetune`` trains: in the kernel (the default), or in worker processes under ``torchrun``."""

    nproc: int | None = option(None, "Train in N worker processes under torchrun (DDP: gloo on CPU, NCCL on GPUs); "
                                     "the global batch stays --batch-size. With --search: N trials at a time, one "
                                     "per process and device.", low=1, high=256)
    strategy: str = option("ddp", "With --nproc: ddp (a replica per process) or fsdp (a full fine-tune sharded over "
                                  "GPUs).", choices=STRATEGIES)
    nnodes: int = option(1, "With --nproc: machines taking part; run the same cell on each.", low=1,
                        high=1024)
    node_rank: int = option(0, "With --nnodes: this machine's number, 0 to NNODES-1.", low=0)
    master_addr: str | None = option(None, f"With --nnodes: the address of node 0 (default {LOCAL_ADDRESS}).")
    master_port: int | None = option(None, "With --nproc: the rendezvous port (default: a free one; required with "
                                           "--nnodes).", low=1, high=65535)

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.nproc is None and (self.nnodes > 1 or self.strategy != "ddp"):
            raise FtpeError("--nnodes and --strategy choose how worker processes train; add --nproc N.")
        if self.node_rank >= self.nnodes:
            raise FtpeError(f"--node-rank must be below --nnodes ({self.nnodes}): 0 on the first machine.")

    @property
    def world_size(self) -> int:
        return (self.nproc or 1) * self.nnodes
