"""An adapter's fingerprint: a digest of its weights and of the format it scores in, the part of a cache key that
says which adapter a result was computed with.

Saving writes it into the adapter's description (``ftpe_adapter.json``), so a kernel that has not read the weights
can still find that adapter's cached results (:func:`.files.describe_adapter`); the digest is the same whether the
adapter was just trained or read back from disk.
"""

from __future__ import annotations

import hashlib

import torch

from ..digests import digest
from ..model.loading import weight_fingerprint
from .registry import Adapter


def weights_fingerprint(adapter: Adapter) -> str:
    """The adapter's weights now (all of them for peft and heads, a strided sample for a trained copy) and the
    format it scores in; computed afresh (a training run's checkpoints each have their own)."""
    parts = hashlib.blake2b(digest_size=12)
    for key, tensor in sorted((adapter.state or {}).items()):
        parts.update(key.encode())
        parts.update(tensor.detach().to("cpu").contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    if adapter.head is not None:
        for key, tensor in sorted(adapter.head.tensors().items()):
            parts.update(key.encode() + tensor.detach().cpu().float().numpy().tobytes())
    if adapter.model is not None:
        parts.update(weight_fingerprint(adapter.model).encode())
    parts.update(digest({k: v for k, v in adapter.metadata().items() if k not in ("train_seconds",)}).encode())
    return parts.hexdigest()


def adapter_fingerprint(adapter: Adapter) -> str:
    """:func:`weights_fingerprint`, computed once per adapter object (or given by its saved description)."""
    if not adapter.fingerprint:
        adapter.fingerprint = weights_fingerprint(adapter)
    return adapter.fingerprint
