"""The exact scoring path for soft prompts: one row per (example, label), right-padded.

Prompt tuning prepends its virtual tokens inside the model, so a custom block attention mask (the
packed trie of ``label_trie``) cannot be passed through it; these rows need nothing but the
model's own 2D mask. Rows are length-sorted so the union of scored positions over a batch stays
small, and single-token label sets take every label from one row's last logits. The batch planner
both paths use, ``token_budget_batches``, lives here too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..model.memory import out_of_memory
from ..model.scoped import quiet_library_notices


@dataclass(frozen=True)
class _Row:
    """One forward row: an example's context (and, when labels are longer than one token, one label's
    tokens but its last)."""

    example: int
    label: int | None
    tokens: list[int]


def _plan_rows(context_ids: list[list[int]], choice_ids: list[list[int]]) -> list[_Row]:
    single_token = all(len(ids) == 1 for ids in choice_ids)
    rows = []
    for example, ids in enumerate(context_ids):
        if single_token:  # every label's log-probability comes from the context's last logits
            rows.append(_Row(example, None, ids))
        else:
            rows += [_Row(example, label, ids + choice[:-1]) for label, choice in enumerate(choice_ids)]
    return rows


def _batch_tensors(batch: list[_Row], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded input ids and their attention mask."""
    width = max(len(row.tokens) for row in batch)
    input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for index, row in enumerate(batch):
        input_ids[index, :len(row.tokens)] = torch.tensor(row.tokens)
        mask[index, :len(row.tokens)] = 1
    return input_ids, mask


def _forward(model, batch: list[_Row], tensors: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """A soft prompt is prepended inside the model: no cache and no positions of ours."""
    input_ids, mask = (tensor.to(model.device) for tensor in tensors)
    try:
        return model(input_ids=input_ids, attention_mask=mask).logits
    except torch.OutOfMemoryError:
        raise out_of_memory(f"scoring a batch of {len(batch)}", "a smaller --batch-size or dtype") from None


def _collect(scores: np.ndarray, batch: list[_Row], logits: torch.Tensor, column: dict[int, int],
             context_lengths: list[int], choice_ids: list[list[int]]) -> None:
    for index, row in enumerate(batch):
        context_len = context_lengths[row.example]
        if row.label is None:
            logp = torch.log_softmax(logits[index, column[context_len - 1]].float(), dim=-1)
            for label, choice in enumerate(choice_ids):
                scores[row.example, label] = float(logp[choice[0]])
        else:
            choice = choice_ids[row.label]
            steps = logits[index, [column[p] for p in _scored_positions(context_len, len(choice))]].float()
            logp = torch.log_softmax(steps, dim=-1)
            scores[row.example, row.label] = float(logp[torch.arange(len(choice)), torch.tensor(choice)].sum())


def _scored_positions(context_len: int, label_len: int) -> range:
    """Suffix positions whose logits predict the label's tokens."""
    return range(context_len - 1, context_len - 1 + label_len)


def token_budget_batches(lengths: list[int], batch_size: int, budget: int) -> list[list[int]]:
    """Consecutive positions of length-sorted rows grouped so that rows x widest row <= budget."""
    batches: list[list[int]] = []
    current: list[int] = []
    width = 0
    for index, length in enumerate(lengths):
        if current and (len(current) >= batch_size or (len(current) + 1) * max(width, length) > budget):
            batches.append(current)
            current, width = [], 0
        current.append(index)
        width = max(width, length)
    if current:
        batches.append(current)
    return batches


def score_rows(model, context_ids: list[list[int]], choice_ids: list[list[int]], batch_size: int, budget: int,
               pad: int, virtual: int, done: np.ndarray, scores: np.ndarray) -> int:
    """Fill ``scores`` (and ``done``, per example) row by row; returns the tokens run. Stops at KeyboardInterrupt."""
    rows = _plan_rows(context_ids, choice_ids)
    order = sorted(range(len(rows)), key=lambda r: -len(rows[r].tokens))
    context_lengths = [len(ids) for ids in context_ids]
    missing_rows = np.bincount([row.example for row in rows], minlength=len(context_ids))
    tokens_run = 0
    with quiet_library_notices():
        for batch_rows in token_budget_batches([len(rows[r].tokens) for r in order], batch_size, budget):
            batch = [rows[order[r]] for r in batch_rows]
            needed = {pos for row in batch for pos in _scored_positions(
                context_lengths[row.example], 1 if row.label is None else len(choice_ids[row.label]))}
            column = {pos: pos + virtual for pos in needed}  # the soft prompt's tokens come first in the logits
            tensors = _batch_tensors(batch, pad)
            _collect(scores, batch, _forward(model, batch, tensors), column, context_lengths, choice_ids)
            tokens_run += tensors[0].numel()
            np.subtract.at(missing_rows, [row.example for row in batch], 1)
            done[:] = missing_rows == 0
    return tokens_run
