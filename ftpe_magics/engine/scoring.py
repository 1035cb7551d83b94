"""Classification by likelihood: which label continuation does the model find most probable?

This is how evaluation harnesses score multiple-choice tasks, made fast for notebooks:
- the token prefix shared by every prompt (instructions plus few-shot examples) is run once and
  its key/value cache is reused for every batch;
- rows are sorted by length and batched with right padding;
- when every label is one token, all labels of an example come from one row's last logits.
The result equals a naive per-example, per-label forward pass (``naive_label_logprobs``) to
float precision; a unit test holds it to 1e-4.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import torch

from .errors import FtpeError
from .memory import out_of_memory
from .model import context_limit
from .scoped import quiet_library_notices


@dataclass
class LabelScores:
    logprobs: np.ndarray          # (examples, labels) summed log-probabilities of each label's tokens
    label_token_counts: list[int]
    prompt_tokens: list[int]
    prefix_tokens: int
    seconds: float
    complete: np.ndarray | None = None  # per example: all its labels scored (False after the stop button)

    @property
    def interrupted(self) -> bool:
        return self.complete is not None and not bool(self.complete.all())

    def normalised(self, labels: list[str], norm: str = "none") -> np.ndarray:
        if norm == "tokens":
            return self.logprobs / np.asarray(self.label_token_counts, float)
        if norm == "chars":
            return self.logprobs / np.asarray([max(1, len(label)) for label in labels], float)
        return self.logprobs


def common_prefix_length(sequences: list[list[int]]) -> int:
    first = sequences[0]
    length = min(len(seq) for seq in sequences)
    for index in range(length):
        token = first[index]
        if any(seq[index] != token for seq in sequences):
            return index
    return length


def encode(tokenizer, contexts: list[str], continuations: list[str], add_special_tokens: bool):
    context_ids = [tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"] for text in contexts]
    choice_ids = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in continuations]
    if any(not ids for ids in choice_ids):
        raise FtpeError("A label encodes to no tokens; labels must be non-empty words.")
    if any(not ids for ids in context_ids):
        raise FtpeError("A prompt encodes to no tokens; check the template.")
    return context_ids, choice_ids


def check_fits(model, context_ids: list[list[int]], choice_ids: list[list[int]], virtual: int = 0) -> None:
    """Refuse, before any forward pass, a prompt that with its label is longer than the model reads."""
    limit = context_limit(model)
    longest = max(map(len, context_ids)) + max(map(len, choice_ids)) + virtual
    if limit is not None and longest > limit:
        index = max(range(len(context_ids)), key=lambda i: len(context_ids[i]))
        raise FtpeError(f"Example {index}'s prompt is {longest} tokens with its label; the model reads at most "
                        f"{limit}. Use fewer demonstrations (--k), shorter texts or shorter instructions.")


@dataclass(frozen=True)
class _Row:
    """One forward row: the tokens fed after the shared prefix, for one example (and one label when
    labels are longer than one token)."""

    example: int
    label: int | None
    tokens: list[int]


def _plan_rows(context_ids: list[list[int]], choice_ids: list[list[int]], prefix: int) -> list[_Row]:
    single_token = all(len(ids) == 1 for ids in choice_ids)
    rows = []
    for example, ids in enumerate(context_ids):
        suffix = ids[prefix:]
        if single_token:  # every label's log-probability comes from the context's last logits
            rows.append(_Row(example, None, suffix))
        else:
            rows += [_Row(example, label, suffix + choice[:-1]) for label, choice in enumerate(choice_ids)]
    return rows


def _batch_tensors(batch: list[_Row], prefix: int, pad: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded input ids, the attention mask over prefix + suffix, and explicit positions."""
    width = max(len(row.tokens) for row in batch)
    input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
    mask = torch.zeros((len(batch), prefix + width), dtype=torch.long)
    mask[:, :prefix] = 1
    for index, row in enumerate(batch):
        input_ids[index, :len(row.tokens)] = torch.tensor(row.tokens)
        mask[index, prefix:prefix + len(row.tokens)] = 1
    positions = torch.arange(prefix, prefix + width).unsqueeze(0).expand(len(batch), -1)
    return input_ids, mask, positions


def _forward(model, batch: list[_Row], tensors, needed: list[int], prefix_cache, virtual: int):
    input_ids, mask, positions = (tensor.to(model.device) for tensor in tensors)
    try:
        if virtual:  # a soft prompt is prepended inside the model: no cache, no positions of ours
            return model(input_ids=input_ids, attention_mask=mask).logits
        cache = None
        if prefix_cache is not None:
            cache = copy.deepcopy(prefix_cache)
            cache.batch_repeat_interleave(len(batch))
        return model(input_ids=input_ids, attention_mask=mask, position_ids=positions, past_key_values=cache,
                     use_cache=cache is not None, logits_to_keep=torch.tensor(needed, device=model.device)).logits
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


@torch.inference_mode()
def label_logprobs(model, tokenizer, contexts: list[str], continuations: list[str], batch_size: int = 32,
                   add_special_tokens: bool = True, share_prefix: bool = True,
                   max_batch_tokens: int | None = None) -> LabelScores:
    """Log-probability of each continuation after each context, batched with a shared prefix cache.

    A batch holds at most ``batch_size`` rows and ``max_batch_tokens`` padded tokens (default 512 on
    a CPU, where the matrix products are compute-bound and small batches measured fastest, 16384 on
    a GPU).
    """
    start = time.perf_counter()
    context_ids, choice_ids = encode(tokenizer, contexts, continuations, add_special_tokens)
    # a soft prompt (prompt tuning) shifts every logit position by its virtual tokens and rules out a shared cache
    virtual = _virtual_tokens(model)
    check_fits(model, context_ids, choice_ids, virtual)
    share_prefix = share_prefix and virtual == 0
    prefix = min(common_prefix_length(context_ids), min(map(len, context_ids)) - 1) if share_prefix else 0
    prefix_cache = None
    if prefix > 0:
        prefix_cache = model(input_ids=torch.tensor([context_ids[0][:prefix]], device=model.device),
                             use_cache=True).past_key_values
    rows = _plan_rows(context_ids, choice_ids, prefix)
    order = sorted(range(len(rows)), key=lambda r: -len(rows[r].tokens))
    scores = np.zeros((len(contexts), len(continuations)))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    budget = max_batch_tokens or (16384 if model.device.type == "cuda" else 512)
    context_lengths = [len(ids) - prefix for ids in context_ids]
    missing_rows = np.bincount([row.example for row in rows], minlength=len(contexts))
    try:
        with quiet_library_notices():
            for batch_rows in token_budget_batches([len(rows[r].tokens) for r in order], batch_size, budget):
                batch = [rows[order[r]] for r in batch_rows]
                # the lm head (vocabulary-sized) runs only where a label token is predicted; rows are
                # length-sorted, so the union of those positions over a batch stays small
                needed = sorted({pos for row in batch for pos in _scored_positions(
                    context_lengths[row.example], 1 if row.label is None else len(choice_ids[row.label]))})
                column = {pos: pos + virtual for pos in needed} if virtual else \
                    {pos: index for index, pos in enumerate(needed)}
                logits = _forward(model, batch, _batch_tensors(batch, prefix, pad), needed, prefix_cache, virtual)
                _collect(scores, batch, logits, column, context_lengths, choice_ids)
                np.subtract.at(missing_rows, [row.example for row in batch], 1)
    except KeyboardInterrupt:
        pass  # the stop button: the examples scored so far are kept, marked by ``complete``
    return LabelScores(scores, [len(ids) for ids in choice_ids], [len(ids) for ids in context_ids], prefix,
                       time.perf_counter() - start, complete=missing_rows == 0)


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


def _virtual_tokens(model) -> int:
    config = getattr(model, "active_peft_config", None)
    if config is not None and getattr(config, "is_prompt_learning", False):
        return int(config.num_virtual_tokens)
    return 0


def _scored_positions(context_len: int, label_len: int) -> range:
    """Suffix positions whose logits predict the label's tokens."""
    return range(context_len - 1, context_len - 1 + label_len)


@torch.inference_mode()
def naive_label_logprobs(model, tokenizer, contexts: list[str], continuations: list[str],
                         add_special_tokens: bool = True) -> np.ndarray:
    """The obvious baseline: one full forward pass per example per label, no batching, no cache."""
    context_ids, choice_ids = encode(tokenizer, contexts, continuations, add_special_tokens)
    scores = np.zeros((len(contexts), len(continuations)))
    for example, ids in enumerate(context_ids):
        for label, choice in enumerate(choice_ids):
            logits = model(input_ids=torch.tensor([ids + choice], device=model.device)).logits[0]
            logp = torch.log_softmax(logits[len(ids) - 1:len(ids) - 1 + len(choice)].float(), dim=-1)
            scores[example, label] = float(logp[torch.arange(len(choice)), torch.tensor(choice)].sum())
    return scores


@torch.inference_mode()
def mean_pooled_embeddings(model, tokenizer, texts: list[str], batch_size: int = 32) -> np.ndarray:
    """Unit-length mean of the last hidden states: the session model's own sentence embeddings."""
    vectors = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(texts[start:start + batch_size], return_tensors="pt", padding=True).to(model.device)
        # positions from the mask: with absolute position embeddings a left-padded text would otherwise be
        # shifted (rotary models are unaffected); logits_to_keep=1: no vocabulary projection is needed
        positions = (batch["attention_mask"].cumsum(-1) - 1).clamp(min=0)
        with quiet_library_notices():
            hidden = model(**batch, position_ids=positions, output_hidden_states=True,
                           logits_to_keep=1).hidden_states[-1].float()
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        vectors.append(torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy())
    return np.concatenate(vectors)
