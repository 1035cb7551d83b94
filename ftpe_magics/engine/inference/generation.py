"""Batched generation with the guarantees a notebook needs.

Prompts are sorted by length and left-padded in batches so padding stays small; results go back
in the caller's order. A ``KeyboardInterrupt`` (the kernel's stop button) returns what was
generated so far instead of losing it, and a CUDA out-of-memory error frees the failed batch and
says how to retry, leaving the model loaded.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import asdict, dataclass, field, replace

import torch
from transformers import StoppingCriteria, StoppingCriteriaList, TextStreamer

from ..config import Ftpe
from ..errors import ContextTooLong, FtpeError
from ..model.loading import context_limit
from ..model.memory import out_of_memory
from ..model.scoped import quiet_library_notices, seeded
from ..options import check_ranges, option, with_config_defaults
from .stopping import AnswerEnded


@dataclass(frozen=True)
class GenerationSettings:
    """Everything that decides a generation's output; kept with each result for reproducibility."""

    max_new_tokens: int | None = option(None, "Tokens to generate (default: Ftpe.max_new_tokens).", low=1, high=32768,
                                        config="max_new_tokens")
    temperature: float = option(0.0, "0 = greedy (default); above 0 samples.", low=0)
    top_p: float = option(1.0, "Nucleus sampling threshold (with --temperature > 0).", low=0, low_open=True, high=1)
    seed: int | None = option(None, "Random seed; a sampled run without one records its own.")
    samples: int = option(1, "Samples per prompt; identical outputs are grouped.", low=1, high=100)
    system: str | None = option(None, "System message for the chat template.")
    raw: bool = option(False, "Send the text as is, without the chat template.")
    batch_size: int | None = option(None, "Prompts per batch with --over (default: Ftpe.batch_size).", low=1, high=4096,
                                    config="batch_size")
    truncate: bool = option(False, "Cut prompts longer than the model's context on the left (and say so) instead "
                                   "of refusing them.")

    def __post_init__(self) -> None:
        check_ranges(self)

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
    truncated: int = 0  # prompts cut on the left to fit the model's context (with --truncate)
    # tokens generated per prompt (the mean over its samples), up to and including the one that ended the
    # answer: with prompt_tokens, what a query costs
    new_tokens: list[float] = field(default_factory=list)


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


def _generate_kwargs(tokenizer, settings: GenerationSettings, draws: int) -> dict:
    kwargs = {"max_new_tokens": settings.max_new_tokens, "pad_token_id": tokenizer.pad_token_id,
              "do_sample": not settings.greedy, "num_return_sequences": draws}
    if not settings.greedy:
        kwargs.update(temperature=settings.temperature, top_p=settings.top_p)
    return kwargs


def generate_texts(model, tokenizer, prompts: list[str], settings: GenerationSettings,
                   stream: bool = False, stop: str | None = None) -> GenerationRun:
    """Generate ``settings.samples`` continuations for every prompt, in the prompts' order.

    ``stop``: end each row where what a metric scores ends, its first non-empty line (``line``) or its first JSON
    object (``object``), see :mod:`.stopping`; None generates up to ``max_new_tokens`` or the end token.
    """
    if not prompts:
        raise FtpeError("Nothing to generate: the list of prompts is empty.")
    if settings.max_new_tokens is None or settings.batch_size is None:  # a direct call: the Ftpe defaults
        settings = with_config_defaults(settings, Ftpe())
    if settings.seed is None and not settings.greedy:
        settings = replace(settings, seed=secrets.randbelow(2**31))  # recorded, so the run can be repeated
    texts, add_special = render_prompts(tokenizer, prompts, settings.system, settings.raw)
    encoded, truncated = fit_context(tokenizer, texts, add_special, context_limit(model), settings.max_new_tokens,
                                     settings.truncate)
    outputs: list[list[str]] = [[] for _ in prompts]
    new_tokens = [0.0] * len(prompts)
    draws = 1 if settings.greedy else settings.samples
    kwargs = _generate_kwargs(tokenizer, settings, draws)
    if stream and len(prompts) == 1 and draws == 1:
        kwargs["streamer"] = TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    start = time.perf_counter()
    interrupted = False
    with seeded(settings.seed, model.device), quiet_library_notices():
        for batch in length_sorted_batches([len(ids) for ids in encoded], settings.batch_size):
            decoded, counts, interrupted = _generate_batch(model, tokenizer, [encoded[i] for i in batch], kwargs,
                                                           stop)
            for row, index in enumerate(batch[:len(decoded) // draws]):
                samples = decoded[row * draws:(row + 1) * draws]
                outputs[index] = samples * settings.samples if draws == 1 else samples
                new_tokens[index] = sum(counts[row * draws:(row + 1) * draws]) / draws
            if interrupted:
                break
    for index, samples in enumerate(outputs):
        if not samples:
            outputs[index] = [""] * settings.samples
    return GenerationRun(outputs=outputs, prompt_tokens=[len(ids) for ids in encoded],
                         seconds=time.perf_counter() - start, settings=settings, interrupted=interrupted,
                         truncated=truncated, new_tokens=new_tokens)


# No tokenizer packs more characters than this into one token on average, so a text longer than
# this many characters per position cannot fit and is refused (or cut) before it is tokenised:
# tokenising a 10 MB value alone would take the kernel away for a long time.
_MAX_CHARS_PER_TOKEN = 64


def fit_context(tokenizer, texts: list[str], add_special: bool, limit: int | None, reserve: int,
                truncate: bool) -> tuple[list[list[int]], int]:
    """Token ids of every text, each fitting ``limit`` with ``reserve`` tokens to spare; how many were cut."""
    encoded, cut = [], 0
    room = None if limit is None else limit - reserve
    if room is not None and room < 1:
        raise FtpeError(f"--max-new-tokens {reserve} leaves no room for a prompt: the model reads at most {limit} "
                        "tokens in all.")
    for index, text in enumerate(texts):
        if room is not None and len(text) > room * _MAX_CHARS_PER_TOKEN:
            if not truncate:
                raise _too_long(index, f"{len(text):,} characters", limit)
            text = text[-room * _MAX_CHARS_PER_TOKEN:]
        ids = tokenizer(text, add_special_tokens=add_special)["input_ids"]
        if room is not None and len(ids) > room:
            if not truncate:
                raise _too_long(index, f"{len(ids):,} tokens", limit)
            ids, cut = ids[-room:], cut + 1
        encoded.append(ids)
    return encoded, cut


def _too_long(index: int, size: str, limit: int) -> FtpeError:
    return ContextTooLong(f"Prompt {index} is {size}; the model reads at most {limit} tokens, generation included. "
                     "Shorten it, or pass --truncate to cut it on the left.")


def generated_lengths(new_ids: torch.Tensor, end_ids: set[int], pad_id: int | None) -> list[int]:
    """Tokens each row generated: up to and including its first end-of-sequence token, else up to the padding
    ``generate`` puts after a row another stopping rule ended (with no padding, the whole row)."""
    lengths = []
    for row in new_ids.tolist():
        length = len(row)
        for position, token in enumerate(row):
            if token in end_ids or token == pad_id:
                length = position + (token in end_ids)
                break
        lengths.append(length)
    return lengths


def _end_ids(model, tokenizer) -> set[int]:
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = configured if isinstance(configured, list) else [configured, tokenizer.eos_token_id]
    return {token for token in ids if token is not None}


def _generate_batch(model, tokenizer, encoded: list[list[int]], kwargs: dict,
                    stop: str | None) -> tuple[list[str], list[int], bool]:
    """Decoded new text of one left-padded batch, the tokens each row generated, and whether the kernel's stop
    button cut it short."""
    padded = tokenizer.pad({"input_ids": encoded}, return_tensors="pt").to(model.device)
    width = padded["input_ids"].shape[1]
    latest = _LatestIds()
    criteria = StoppingCriteriaList([latest] + ([AnswerEnded(tokenizer, width, stop)] if stop else []))
    interrupted = False
    try:
        with torch.inference_mode():
            generated = model.generate(**padded, **kwargs, stopping_criteria=criteria)
    except KeyboardInterrupt:
        interrupted, generated = True, latest.input_ids
        if generated is None:
            return [], [], True
    except torch.OutOfMemoryError:
        del padded
        half = max(1, len(encoded) // 2)
        raise out_of_memory(f"generating a batch of {len(encoded)} prompts of up to {width} tokens",
                            f"--batch-size {half}, fewer --max-new-tokens, or a smaller dtype") from None
    new_ids = generated[:, width:]
    return (tokenizer.batch_decode(new_ids, skip_special_tokens=True),
            generated_lengths(new_ids, _end_ids(model, tokenizer), tokenizer.pad_token_id), interrupted)
