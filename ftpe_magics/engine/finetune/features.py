"""Training examples as token ids: the template filled with the label, the loss on the answer.

The text is exactly what ``%%fewshot`` and scoring use (the chat template's user turn and the bare
label as the assistant's answer, or the raw template with ``--raw``), so a prompt and a fine-tune
are compared on the same words.
"""

from __future__ import annotations

from ..data.examples import Examples
from ..errors import FtpeError
from ..prompting.templates import ExampleTemplate, formatted_pair, template_fields


def build_features(tokenizer, template: ExampleTemplate, data: Examples, chat: bool, loss: str,
                   max_len: int) -> list[dict]:
    """Token ids and labels (-100 where no loss is taken), the context left-truncated to fit ``max_len``."""
    features = []
    for row, label in zip(data.rows, data.labels, strict=True):
        context, answer, add_special = formatted_pair(tokenizer, template, row, label, chat)
        context_ids = tokenizer(context, add_special_tokens=add_special)["input_ids"]
        answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        room = max_len - len(answer_ids)
        if room < 1:
            raise FtpeError(f"--max-len {max_len} leaves no room for the prompt (the answer alone is "
                            f"{len(answer_ids)} tokens); raise --max-len.")
        context_ids = context_ids[-room:]
        ids = context_ids + answer_ids
        labels = ([-100] * len(context_ids) if loss == "answer" else list(context_ids)) + answer_ids
        features.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels})
    return features


def check_max_len(tokenizer, template: ExampleTemplate, chat: bool, max_len: int, label_set: list[str]) -> None:
    """Refuse a --max-len shorter than the template's own text plus an answer, before any training."""
    fields = template_fields(template.instructions + "\n" + template.template)
    empty_row = {field: "" for field in fields if field != "label"}
    longest = max(label_set, key=len)
    context, answer, add_special = formatted_pair(tokenizer, template, empty_row, longest, chat)
    needed = len(tokenizer(context, add_special_tokens=add_special)["input_ids"]) + \
        len(tokenizer(answer, add_special_tokens=False)["input_ids"]) + 1
    if needed > max_len:
        raise FtpeError(f"--max-len {max_len} is shorter than the template's prompt and answer ({needed} tokens "
                        "with empty fields); raise --max-len.")


