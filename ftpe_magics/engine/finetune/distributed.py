"""What training does differently inside a ``torchrun`` process group; nothing here acts outside one.

Every rank must take every decision at the same step, or the next collective operation hangs: the
stop button and early stopping are decided once for all ranks (a logical OR over them), and the
validation accuracy is one number for all (each rank scores its share of the validation set, the
counts are summed), so the best state and the stop step are the same everywhere.
"""

from __future__ import annotations

from typing import Any

import torch

STRATEGIES = ("ddp", "fsdp")
LOCAL_ADDRESS = "127.0.0.1"  # node 0 of a one-machine process group


def in_process_group() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def distributed_world() -> int:
    return torch.distributed.get_world_size() if in_process_group() else 1


def distributed_rank() -> int:
    return torch.distributed.get_rank() if in_process_group() else 0


def _reduced(number: int, op) -> int:
    """``number`` reduced over the ranks by ``op`` (alone, the number itself); NCCL reduces GPU tensors only."""
    if not in_process_group():
        return number
    value = torch.tensor([number], dtype=torch.int64)
    if torch.distributed.get_backend() == "nccl":
        value = value.cuda()
    torch.distributed.all_reduce(value, op=op)
    return int(value.item())


def any_rank(flag: bool) -> bool:
    """True on every rank when it is true on one."""
    return bool(_reduced(int(flag), torch.distributed.ReduceOp.MAX))


def summed(count: int) -> int:
    """``count`` summed over the ranks."""
    return _reduced(count, torch.distributed.ReduceOp.SUM)


def summed_value(value: float) -> float:
    """``value`` summed over the ranks (a float: a loss)."""
    if not in_process_group():
        return value
    tensor = torch.tensor([value], dtype=torch.float64)
    if torch.distributed.get_backend() == "nccl":
        tensor = tensor.cuda()
    torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.SUM)
    return float(tensor.item())


def my_share(count: int) -> list[int]:
    """The indices of ``count`` items this rank handles (every world-th one, from its rank)."""
    return list(range(distributed_rank(), count, distributed_world()))


def strategy_arguments(strategy: str) -> dict[str, Any]:
    """``TrainingArguments`` for a strategy: DDP needs nothing; FSDP shards parameters, gradients and optimizer
    state of each transformer block (FSDP2 through accelerate)."""
    if strategy != "fsdp" or distributed_world() == 1:
        return {}
    return {"fsdp": True, "fsdp_config": {"version": 2, "reshard_after_forward": True,
                                          "auto_wrap_policy": "TRANSFORMER_BASED_WRAP"}}
