"""Classification by likelihood: which label continuation does the model find most probable?

This is how evaluation harnesses score multiple-choice tasks, made fast for notebooks:
- each example's context runs once, with every label packed after it as a token trie
  (``label_trie``): labels that share leading tokens share them, so the work per example is the
  context plus the trie, not labels x context;
- the token prefix shared by every prompt (instructions plus few-shot examples) is run once and
  its key/value cache is reused for every batch;
- rows are sorted by length and batched by a token budget and a budget for the kept logits;
- the vocabulary projection runs only where a label token is predicted.
The result equals a naive per-example, per-label forward pass (``naive_label_logprobs``) to
float precision; unit tests hold it to 1e-4 for every case the scorer distinguishes.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ContextTooLong, FtpeError
from ..model.loading import context_limit
from ..model.memory import out_of_memory
from ..model.scoped import quiet_library_notices
from .kv_cache import cache_kwargs, output_cache
from .label_trie import LabelTrie, PackedBatch, build_trie, pack
from .scoring_rows import score_rows, token_budget_batches
from .shared_work import ScoringShare

POOLS = ("mean", "last")  # how hidden states become one vector per text: their mean, or the last token's
# kept logits (rows x scored positions x vocabulary, float32) per batch: 256 MiB on a CPU, 2 GiB on a GPU
_LOGIT_BYTES = {False: 256 << 20, True: 2 << 30}


@dataclass
class LabelScores:
    logprobs: np.ndarray          # (examples, labels) summed log-probabilities of each label's tokens
    label_token_counts: list[int]
    prompt_tokens: list[int]
    prefix_tokens: int
    seconds: float
    complete: np.ndarray | None = None  # per example: all its labels scored (False after the stop button)
    tokens_run: int = 0           # tokens fed to the model, padding and the shared prefix (once) included
    floor_tokens: int = 0         # the least any exact method must run: prefix + each context + the label trie

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


def encode(tokenizer, contexts: list[str], continuations: list[str], add_special_tokens: bool,
           known: dict | None = None):
    """Token ids of the contexts and continuations; ``known`` (the call's shared work) keeps every text's ids,
    so a pool's prompts are tokenised once per call."""
    def ids(text: str, special: bool) -> list[int]:
        if known is None:
            return tokenizer(text, add_special_tokens=special)["input_ids"]
        key = (special, text)
        if key not in known:
            known[key] = tokenizer(text, add_special_tokens=special)["input_ids"]
        return known[key]

    context_ids = [ids(text, add_special_tokens) for text in contexts]
    choice_ids = [ids(text, False) for text in continuations]
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
        raise ContextTooLong(f"Example {index}'s prompt is {longest} tokens with its label; the model reads at most "
                        f"{limit}. Use fewer demonstrations (--k), shorter texts or shorter instructions.")


@torch.inference_mode()
def label_logprobs(model, tokenizer, contexts: list[str], continuations: list[str], batch_size: int = 32,
                   add_special_tokens: bool = True, share_prefix: bool = True,
                   max_batch_tokens: int | None = None, share: ScoringShare | None = None) -> LabelScores:
    """Log-probability of each continuation after each context: each context runs once, with the label trie.

    A batch holds at most ``batch_size`` rows and ``max_batch_tokens`` tokens (default 512 on a CPU,
    where the matrix products are compute-bound and small batches measured fastest, 16384 on a GPU),
    and its kept logits stay under ``_LOGIT_BYTES``, so 150 labels do not run out of memory. The
    stop button keeps what was scored (``complete``). With ``share`` (the call's shared work for these
    weights), contexts scored before in the call are not run again and the prefix starts from a cached one.
    """
    start = time.perf_counter()
    context_ids, choice_ids = encode(tokenizer, contexts, continuations, add_special_tokens,
                                     share.call.token_ids if share is not None else None)
    virtual = _virtual_tokens(model)
    check_fits(model, context_ids, choice_ids, virtual)
    if share is not None and not virtual:
        return _shared_label_logprobs(model, tokenizer, context_ids, choice_ids, share, start, batch_size,
                                      add_special_tokens, max_batch_tokens)
    return _label_logprobs(model, tokenizer, context_ids, choice_ids, start, batch_size, share_prefix,
                           max_batch_tokens)


def _shared_label_logprobs(model, tokenizer, context_ids: list[list[int]], choice_ids: list[list[int]],
                           share: ScoringShare, start: float, batch_size: int, add_special_tokens: bool,
                           max_batch_tokens: int | None) -> LabelScores:
    """Only the contexts the call has not scored yet run; the others' rows are read back."""
    labels_key = (add_special_tokens, tuple(map(tuple, choice_ids)))
    known = share.known_rows(labels_key, context_ids)
    missing = [index for index in range(len(context_ids)) if index not in known]
    scores = np.zeros((len(context_ids), len(choice_ids)))
    done = np.zeros(len(context_ids), dtype=bool)
    for index, row in known.items():
        scores[index], done[index] = row, True
    ran = LabelScores(np.zeros((0, len(choice_ids))), [len(ids) for ids in choice_ids], [], 0, 0.0,
                      complete=np.zeros(0, dtype=bool))
    if missing:
        ran = _label_logprobs(model, tokenizer, [context_ids[i] for i in missing], choice_ids, start, batch_size,
                              True, max_batch_tokens, share)
        scores[missing], done[missing] = ran.logprobs, ran.complete
        share.keep_rows(labels_key, [context_ids[i] for i in missing], ran.logprobs, ran.complete)
        share.call.tokens_run += ran.tokens_run
    trie_size = build_trie(choice_ids).size
    return LabelScores(scores, ran.label_token_counts, [len(ids) for ids in context_ids], ran.prefix_tokens,
                       time.perf_counter() - start, complete=done, tokens_run=ran.tokens_run,
                       floor_tokens=ran.prefix_tokens + sum(len(ids) - ran.prefix_tokens + trie_size
                                                            for ids in context_ids))


def _label_logprobs(model, tokenizer, context_ids: list[list[int]], choice_ids: list[list[int]], start: float,
                    batch_size: int, share_prefix: bool, max_batch_tokens: int | None,
                    share: ScoringShare | None = None) -> LabelScores:
    virtual = _virtual_tokens(model)
    trie = build_trie(choice_ids)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    on_gpu = model.device.type == "cuda"
    budget = max_batch_tokens or (16384 if on_gpu else 512)
    scores = np.zeros((len(context_ids), len(choice_ids)))
    done = np.zeros(len(context_ids), dtype=bool)
    prefix = 0
    try:
        if virtual or not _packs(model):  # a soft prompt (or an attention without custom masks): per-label rows
            tokens_run = score_rows(model, context_ids, choice_ids, batch_size, budget, pad, virtual, done, scores)
        else:
            prefix = min(common_prefix_length(context_ids), min(map(len, context_ids)) - 1) if share_prefix else 0
            tokens_run = _score_packed(model, context_ids, trie, len(choice_ids), prefix, batch_size, budget, pad,
                                       done, scores, share)
    except KeyboardInterrupt:
        tokens_run = 0  # the stop button: the examples scored so far are kept, marked by ``complete``
    return LabelScores(scores, [len(ids) for ids in choice_ids], [len(ids) for ids in context_ids], prefix,
                       time.perf_counter() - start, complete=done, tokens_run=tokens_run,
                       floor_tokens=prefix + sum(len(ids) - prefix + trie.size for ids in context_ids))


def _packs(model) -> bool:
    """Whether the model takes a custom 4D additive mask (eager and SDPA attention do; flash attention does not)."""
    config = getattr(model, "config", None)
    return getattr(config, "_attn_implementation", "eager") in ("eager", "sdpa") and \
        not getattr(config, "final_logit_softcapping", None)


def _run_prefix(model, ids: list[int], cache=None):
    """The key/value cache of ``ids`` (after ``cache``, when given): one forward pass of batch 1."""
    try:
        return output_cache(model(input_ids=torch.tensor([ids], device=model.device), **cache_kwargs(cache),
                                  use_cache=True))
    except torch.OutOfMemoryError:
        raise out_of_memory(f"scoring a batch of 1 (the {len(ids)}-token prefix shared by every prompt)",
                            "a smaller --batch-size or dtype, or fewer demonstrations") from None


def _score_packed(model, context_ids: list[list[int]], trie: LabelTrie, labels: int, prefix: int, batch_size: int,
                  budget: int, pad: int, done: np.ndarray, scores: np.ndarray, share: ScoringShare | None) -> int:
    """Fill ``scores`` one batch of packed rows at a time; returns the tokens run (padding and prefix included)."""
    device = model.device
    prefix_cache, tokens_run = None, prefix
    if prefix and share is not None:  # from the call's cached prefix that shares the most tokens with this one
        prefix_cache, tokens_run = share.prefix_cache(model, context_ids[0][:prefix],
                                                      lambda ids, cache: _run_prefix(model, ids, cache))
    elif prefix:  # instructions and shared demonstrations: run once, their key/value cache reused by every batch
        prefix_cache = _run_prefix(model, context_ids[0][:prefix])
    suffixes = [ids[prefix:] for ids in context_ids]
    order = sorted(range(len(suffixes)), key=lambda e: -len(suffixes[e]))
    vocab = model.get_output_embeddings().weight.shape[0]
    rows_for_logits = max(1, _LOGIT_BYTES[device.type == "cuda"] // ((1 + trie.size) * vocab * 4))
    slots, pair_tokens, pair_labels = (t.to(device) for t in (trie.slots, trie.pair_tokens, trie.pair_labels))
    with quiet_library_notices():
        for batch in token_budget_batches([len(suffixes[e]) + trie.size for e in order],
                                          min(batch_size, rows_for_logits), budget):
            examples = [order[i] for i in batch]
            packed = pack([suffixes[e] for e in examples], trie, prefix, pad, model.dtype)
            logits = _forward_packed(model, packed, prefix_cache)
            logp = torch.log_softmax(logits.float(), dim=-1)[:, slots, pair_tokens]    # (rows, label tokens)
            summed = torch.zeros((len(examples), labels), device=device).index_add_(1, pair_labels, logp)
            scores[examples] = summed.double().cpu().numpy()
            done[examples] = True
            tokens_run += packed.input_ids.numel()
    return tokens_run


def _forward_packed(model, packed: PackedBatch, prefix_cache) -> torch.Tensor:
    device = model.device
    cache = None
    if prefix_cache is not None:
        cache = copy.deepcopy(prefix_cache)
        cache.batch_repeat_interleave(len(packed.input_ids))
    try:
        return model(input_ids=packed.input_ids.to(device), attention_mask=packed.attention_mask.to(device),
                     position_ids=packed.position_ids.to(device), **cache_kwargs(cache), use_cache=cache is not None,
                     logits_to_keep=packed.keep.to(device)).logits
    except torch.OutOfMemoryError:
        raise out_of_memory(f"scoring a batch of {len(packed.input_ids)}", "a smaller --batch-size or dtype") \
            from None


def _virtual_tokens(model) -> int:
    config = getattr(model, "active_peft_config", None)
    if config is not None and getattr(config, "is_prompt_learning", False):
        return int(config.num_virtual_tokens)
    return 0


@torch.inference_mode()
def naive_label_logprobs(model, tokenizer, contexts: list[str], continuations: list[str],
                         add_special_tokens: bool = True) -> np.ndarray:
    """The obvious baseline: one full forward pass per example per label, no batching, no cache."""
    context_ids, choice_ids = encode(tokenizer, contexts, continuations, add_special_tokens)
    scores = np.zeros((len(contexts), len(continuations)))
    virtual = _virtual_tokens(model)  # a soft prompt's logits come first
    for example, ids in enumerate(context_ids):
        for label, choice in enumerate(choice_ids):
            logits = model(input_ids=torch.tensor([ids + choice], device=model.device)).logits[0, virtual:]
            logp = torch.log_softmax(logits[len(ids) - 1:len(ids) - 1 + len(choice)].float(), dim=-1)
            scores[example, label] = float(logp[torch.arange(len(choice)), torch.tensor(choice)].sum())
    return scores


def pooled(hidden: torch.Tensor, mask: torch.Tensor, pool: str) -> torch.Tensor:
    """The mean of the real tokens' states, or the last real token's (right padding)."""
    if pool == "last":
        last = mask.sum(dim=1) - 1
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)


@torch.inference_mode()
def pooled_features(model, tokenizer, texts: list[str], pool: str, batch_size: int = 32,
                    max_len: int | None = None) -> torch.Tensor:
    """Pooled last hidden states of ``texts`` (float32, on the CPU), batched by length, in the caller's order."""
    decoder = model.get_decoder()
    encoded = [tokenizer(text)["input_ids"][-(max_len or 10**9):] for text in texts]
    order = sorted(range(len(texts)), key=lambda i: -len(encoded[i]))
    out = None
    for start in range(0, len(order), batch_size):
        chosen = order[start:start + batch_size]
        width = max(len(encoded[i]) for i in chosen)
        ids = torch.full((len(chosen), width), tokenizer.pad_token_id or 0, dtype=torch.long)
        mask = torch.zeros((len(chosen), width), dtype=torch.long)
        for row, index in enumerate(chosen):
            ids[row, :len(encoded[index])] = torch.tensor(encoded[index])
            mask[row, :len(encoded[index])] = 1
        hidden = decoder(input_ids=ids.to(model.device), attention_mask=mask.to(model.device)).last_hidden_state
        vectors = pooled(hidden, mask.to(model.device), pool).float().cpu()
        out = torch.zeros((len(texts), vectors.shape[1])) if out is None else out
        out[chosen] = vectors
    return out


def mean_pooled_embeddings(model, tokenizer, texts: list[str], batch_size: int = 32) -> np.ndarray:
    """Unit-length mean of the last hidden states: the session model's own sentence embeddings (``similar``)."""
    return torch.nn.functional.normalize(pooled_features(model, tokenizer, texts, "mean", batch_size), dim=-1).numpy()
