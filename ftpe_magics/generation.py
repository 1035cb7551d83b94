"""Batched generation with the guarantees a notebook needs.

Prompts are sorted by length and left-padded in batches so padding stays small; results go back
in the caller's order. A ``KeyboardInterrupt`` (the kernel's stop button) returns what was
generated so far instead of losing it, and a CUDA out-of-memory error frees the failed batch and
says how to retry, leaving the model loaded.
"""

from __future__ import annotations

import gc
import random
import time
from dataclasses import asdict, dataclass, replace

import torch
from transformers import StoppingCriteria, StoppingCriteriaList, TextStreamer

from .errors import FtpeError


@dataclass(frozen=True)
class GenerationSettings:
    """Everything that decides a generation's output; kept with each result for reproducibility."""

    max_new_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    samples: int = 1
    system: str | None = None
    raw: bool = False
    batch_size: int = 32

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise FtpeError("--max-new-tokens must be at least 1.")
        if self.temperature < 0:
            raise FtpeError("--temperature must be 0 (greedy) or more.")
        if not 0 < self.top_p <= 1:
            raise FtpeError("--top-p must be in (0, 1].")
        if self.samples < 1 or self.batch_size < 1:
            raise FtpeError("--samples and --batch-size must be at least 1.")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class GenerationRun:
    """Outputs per prompt (one list of samples each), in the order the prompts were given."""

    outputs: list[list[str]]
    prompt_tokens: list[int]
    seconds: float
    settings: GenerationSettings
    interrupted: bool = False


def render_prompts(tokenizer, prompts: list[str], system: str | None, raw: bool) -> tuple[list[str], bool]:
    """Apply the chat template unless ``raw``; returns the texts and whether to add special tokens."""
    if raw or not getattr(tokenizer, "chat_template", None):
        if system:
            prompts = [f"{system}\n\n{prompt}" for prompt in prompts]
        return prompts, True
    rendered = []
    for prompt in prompts:
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": prompt}
        ]
        rendered.append(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))
    return rendered, False


class _LatestIds(StoppingCriteria):
    """Never stops anything: keeps the newest token ids so an interrupt can return them."""

    def __init__(self) -> None:
        self.input_ids: torch.Tensor | None = None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.BoolTensor:
        self.input_ids = input_ids
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


def length_sorted_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length, longest first (an OOM shows up at once)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[start:start + batch_size] for start in range(0, len(order), batch_size)]


def free_accelerator_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def generate_texts(model, tokenizer, prompts: list[str], settings: GenerationSettings,
                   stream: bool = False) -> GenerationRun:
    """Generate ``settings.samples`` continuations for every prompt."""
    if not prompts:
        raise FtpeError("Nothing to generate: the list of prompts is empty.")
    if settings.seed is None and not settings.greedy:
        settings = replace(settings, seed=random.randrange(2**31))  # recorded, so the run can be repeated
    if settings.seed is not None:
        torch.manual_seed(settings.seed)
    texts, add_special = render_prompts(tokenizer, prompts, settings.system, settings.raw)
    encoded = [tokenizer(text, add_special_tokens=add_special)["input_ids"] for text in texts]
    lengths = [len(ids) for ids in encoded]
    outputs: list[list[str]] = [[] for _ in prompts]
    draws = 1 if settings.greedy else settings.samples
    kwargs = {"max_new_tokens": settings.max_new_tokens, "pad_token_id": tokenizer.pad_token_id,
              "do_sample": not settings.greedy, "num_return_sequences": draws}
    if not settings.greedy:
        kwargs.update(temperature=settings.temperature, top_p=settings.top_p)
    streamer = TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True) if (
        stream and len(prompts) == 1 and draws == 1) else None
    start = time.perf_counter()
    interrupted = False
    device = model.device
    for batch in length_sorted_batches(lengths, settings.batch_size):
        padded = tokenizer.pad({"input_ids": [encoded[i] for i in batch]}, return_tensors="pt").to(device)
        width = padded["input_ids"].shape[1]
        latest = _LatestIds()
        try:
            with torch.inference_mode():
                generated = model.generate(**padded, **kwargs, streamer=streamer,
                                           stopping_criteria=StoppingCriteriaList([latest]))
        except KeyboardInterrupt:
            interrupted = True
            generated = latest.input_ids
            if generated is None:
                break
        except torch.OutOfMemoryError:
            del padded
            free_accelerator_memory()
            raise FtpeError(
                f"CUDA out of memory while generating a batch of {len(batch)} prompts of up to {width} tokens. "
                f"Retry with --batch-size {max(1, len(batch) // 2)}, fewer --max-new-tokens, or a smaller dtype; "
                "the model is still loaded."
            ) from None
        decoded = tokenizer.batch_decode(generated[:, width:], skip_special_tokens=True)
        for row, index in enumerate(batch):
            samples = decoded[row * draws:(row + 1) * draws]
            outputs[index] = samples * settings.samples if draws == 1 else samples
        if interrupted:
            break
    for index, samples in enumerate(outputs):
        if not samples:
            outputs[index] = [""] * settings.samples
    return GenerationRun(outputs=outputs, prompt_tokens=lengths, seconds=time.perf_counter() - start,
                         settings=settings, interrupted=interrupted)
