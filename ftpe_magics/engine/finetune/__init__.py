"""Fine-tuning the session's model: options (one dataclass), methods (a registry), features,
observers and the training loop (transformers' ``Trainer``)."""

from .options import FinetuneOptions

__all__ = ["FinetuneOptions"]
