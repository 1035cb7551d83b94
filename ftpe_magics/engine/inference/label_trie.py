"""Every label scored against one pass of its context: the label set as a token trie, packed after it.

Scoring a label by likelihood needs the log-probability of each of its tokens given the context and
the label's earlier tokens. Running the context once per label repeats the expensive part
(``labels x context`` tokens). Here each example is one row: its context, then every *internal*
node of the label trie (each distinct proper prefix of a label, so labels that share leading
tokens share them), with a block attention mask in which a trie token sees the context and its own
ancestors only. The logit at the context's last token predicts every label's first token; the
logit at a trie node predicts the tokens that follow that prefix. Work per example is then
``context + trie nodes`` tokens, and one vocabulary projection per scored position.

Contexts are left-padded so the trie sits in the same columns of every row: one set of columns
to keep (``logits_to_keep``) serves the whole batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LabelTrie:
    """Fed nodes (internal trie nodes) and, per label, which scored slot predicts each of its tokens.

    Slot 0 is the context's last position; slot ``j + 1`` is fed node ``j``.
    """

    tokens: list[int]              # the token fed at each node, parents before children
    depths: list[int]              # 1 for a label's first token
    ancestors: torch.Tensor        # (nodes, nodes) bool: node j attends node a (a is j or above it)
    slots: torch.Tensor            # (pairs,) the slot whose logits predict the pair's token
    pair_tokens: torch.Tensor      # (pairs,) that token
    pair_labels: torch.Tensor      # (pairs,) the label the pair belongs to

    @property
    def size(self) -> int:
        return len(self.tokens)


def build_trie(choice_ids: list[list[int]]) -> LabelTrie:
    node_of: dict[tuple[int, ...], int] = {}
    tokens, depths, parents = [], [], []
    slots, pair_tokens, pair_labels = [], [], []
    for label, ids in enumerate(choice_ids):
        for depth, token in enumerate(ids):
            prefix = tuple(ids[:depth])  # what comes before this token: the slot that predicts it
            slots.append(0 if depth == 0 else node_of[prefix] + 1)
            pair_tokens.append(token)
            pair_labels.append(label)
            if depth < len(ids) - 1 and tuple(ids[:depth + 1]) not in node_of:
                node_of[tuple(ids[:depth + 1])] = len(tokens)
                tokens.append(token)
                depths.append(depth + 1)
                parents.append(node_of[prefix] if depth else -1)
    ancestors = torch.eye(len(tokens), dtype=torch.bool)
    for node, parent in enumerate(parents):  # parents come first, so their rows are complete
        if parent >= 0:
            ancestors[node] |= ancestors[parent]
    return LabelTrie(tokens, depths, ancestors, torch.tensor(slots), torch.tensor(pair_tokens),
                     torch.tensor(pair_labels))


@dataclass
class PackedBatch:
    input_ids: torch.Tensor        # (rows, width + trie)
    position_ids: torch.Tensor     # (rows, width + trie)
    attention_mask: torch.Tensor   # (rows, 1, width + trie, prefix + width + trie), additive
    keep: torch.Tensor             # columns whose logits are needed: the context's last, then every trie node


def pack(suffixes: list[list[int]], trie: LabelTrie, prefix: int, pad: int, dtype: torch.dtype) -> PackedBatch:
    """Rows of ``[left padding][context suffix][trie nodes]`` after a shared prefix of ``prefix`` tokens."""
    rows, width, size = len(suffixes), max(map(len, suffixes)), trie.size
    lengths = torch.tensor([len(s) for s in suffixes])
    starts = width - lengths                                        # first real column of each row
    input_ids = torch.full((rows, width + size), pad, dtype=torch.long)
    for row, suffix in enumerate(suffixes):
        input_ids[row, width - len(suffix):width] = torch.tensor(suffix)
    input_ids[:, width:] = torch.tensor(trie.tokens, dtype=torch.long)
    columns = torch.arange(width + size)
    positions = prefix + (columns[None, :width] - starts[:, None]).clamp(min=0)
    trie_positions = prefix + lengths[:, None] + torch.tensor(trie.depths, dtype=torch.long)[None, :] - 1
    position_ids = torch.cat([positions, trie_positions], dim=1)
    allowed = _allowed(width, size, trie, starts)
    mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill_(~allowed, torch.finfo(dtype).min)
    # every real query also sees the shared prefix, held in the key/value cache before these columns
    real = columns[None, :] >= starts[:, None]
    prefix_mask = torch.zeros((rows, width + size, prefix), dtype=dtype).masked_fill_(~real[:, :, None],
                                                                                     torch.finfo(dtype).min)
    keep = torch.cat([torch.tensor([width - 1]), width + torch.arange(size)])
    return PackedBatch(input_ids, position_ids, torch.cat([prefix_mask, mask], dim=2)[:, None], keep)


def _allowed(width: int, size: int, trie: LabelTrie, starts: torch.Tensor) -> torch.Tensor:
    """(rows, queries, keys) bool over the columns after the prefix: causal within the context, a trie node
    over the whole context and its ancestors; padding sees only itself (a row of all -inf would be NaN)."""
    query = torch.arange(width + size)[:, None]
    key = torch.arange(width + size)[None, :]
    in_context = (query < width) & (key < width) & (key <= query)
    trie_to_context = (query >= width) & (key < width)
    trie_to_trie = torch.zeros((width + size, width + size), dtype=torch.bool)
    trie_to_trie[width:, width:] = trie.ancestors
    block = (in_context | trie_to_context | trie_to_trie)[None]
    real_key = key[None] >= starts[:, None, None]
    real_query = query[None] >= starts[:, None, None]
    return (block & real_key & real_query) | (~real_query & (query == key)[None])
