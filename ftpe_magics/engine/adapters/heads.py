"""The cheapest fine-tunes: a classifier on the model's pooled hidden states instead of a generated label.

``probe`` fits a logistic regression on the frozen model's features (seconds, no gradient through
the model): a baseline that says whether the features already separate the classes. ``head``
trains a linear layer on the pooled state with ``Trainer``, the body adapted by LoRA (or frozen).
Both predict by argmax over the classes, so a prediction never depends on sampling.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import FtpeError
from ..inference.scoring import pooled, pooled_features


@dataclass
class ClassifierHead:
    """A linear classifier over pooled hidden states; ``mean``/``std`` standardise features (probe only)."""

    weight: torch.Tensor          # (classes, hidden)
    bias: torch.Tensor            # (classes,)
    label_set: list[str]
    pool: str
    mean: torch.Tensor | None = None
    std: torch.Tensor | None = None

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        features = features.float()
        if self.mean is not None:
            features = (features - self.mean.to(features.device)) / self.std.to(features.device)
        return features @ self.weight.to(features.device).T + self.bias.to(features.device)

    def tensors(self) -> dict[str, torch.Tensor]:
        found = {"weight": self.weight, "bias": self.bias, "mean": self.mean, "std": self.std}
        return {key: value.detach().cpu().contiguous() for key, value in found.items() if value is not None}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], label_set: list[str], pool: str) -> ClassifierHead:
        return cls(tensors["weight"], tensors["bias"], list(label_set), pool, tensors.get("mean"), tensors.get("std"))


def class_ids(labels: list[str], label_set: list[str], what: str) -> torch.Tensor:
    index = {label: i for i, label in enumerate(label_set)}
    unseen = sorted({label for label in labels if label not in index})
    if unseen:
        raise FtpeError(f"{what} has label {unseen[0]!r}, which the classifier was not trained on (its labels: "
                        f"{', '.join(label_set[:8])}{', ...' if len(label_set) > 8 else ''}).")
    return torch.tensor([index[label] for label in labels])


def class_weights(targets: torch.Tensor, classes: int) -> torch.Tensor:
    """Balanced weights, n / (classes x count): a rare class counts as much as a common one."""
    counts = torch.bincount(targets, minlength=classes).float().clamp(min=1)
    return len(targets) / (classes * counts)


def fit_probe(features: torch.Tensor, targets: torch.Tensor, label_set: list[str], pool: str, l2: float,
              iterations: int = 200) -> ClassifierHead:
    """Multinomial logistic regression with class weights and L2, by L-BFGS on standardised features."""
    mean, std = features.mean(0), features.std(0).clamp(min=1e-6)
    x = (features - mean) / std
    weight = torch.zeros((len(label_set), x.shape[1]), requires_grad=True)
    bias = torch.zeros(len(label_set), requires_grad=True)
    loss_fn = torch.nn.CrossEntropyLoss(weight=class_weights(targets, len(label_set)))
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=iterations, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = loss_fn(x @ weight.T + bias, targets) + l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return ClassifierHead(weight.detach(), bias.detach(), list(label_set), pool, mean, std)


def accuracy(head: ClassifierHead, features: torch.Tensor, targets: torch.Tensor) -> float:
    return float((head.logits(features).argmax(1) == targets).float().mean())


class ClassifierModel(torch.nn.Module):
    """The model's decoder, pooled, then a linear head: what ``Trainer`` trains for ``--method head``.

    The decoder is the session's own (LoRA layers injected into it, or frozen with ``--freeze-body``) or a
    trained copy's (gradual unfreezing with ``--head``); the vocabulary projection is never run.
    """

    def __init__(self, language_model, classes: int, pool: str, freeze_body: bool) -> None:
        super().__init__()
        self.language_model = language_model
        self.config = language_model.config
        self.pool, self.freeze_body = pool, freeze_body
        hidden = language_model.get_output_embeddings().weight.shape[1]
        self.head = torch.nn.Linear(hidden, classes).to(language_model.device)
        torch.nn.init.zeros_(self.head.weight)
        torch.nn.init.zeros_(self.head.bias)
        self.loss_weight: torch.Tensor | None = None

    def forward(self, input_ids, attention_mask, labels=None, **_):
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_body):
            hidden = self.language_model.get_decoder()(input_ids=input_ids, attention_mask=attention_mask)
        logits = self.head(pooled(hidden.last_hidden_state, attention_mask, self.pool).to(self.head.weight.dtype))
        loss = None
        if labels is not None:
            weight = None if self.loss_weight is None else self.loss_weight.to(logits.device)
            loss = torch.nn.functional.cross_entropy(logits.float(), labels, weight=weight)
        return {"loss": loss, "logits": logits}

    def as_head(self, label_set: list[str]) -> ClassifierHead:
        return ClassifierHead(self.head.weight.detach().float().cpu().clone(),
                              self.head.bias.detach().float().cpu().clone(), list(label_set), self.pool)


def predict(model, tokenizer, head: ClassifierHead, texts: list[str], batch_size: int) -> np.ndarray:
    """Class probabilities of every text under ``head``, on the model as it is now (LoRA attached or not)."""
    features = pooled_features(model, tokenizer, texts, head.pool, batch_size)
    return torch.softmax(head.logits(features), dim=-1).numpy()
