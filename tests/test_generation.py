import pytest
import torch

from ftpe_magics import FtpeError, GenerationSettings
from ftpe_magics.engine.inference.generation import generate_texts, length_sorted_batches

PROMPTS = ["a", "the movie was great and i loved it", "bb good", "what is the weather like", "x y"]


def test_batches_sorted_longest_first_and_cover_every_index():
    batches = length_sorted_batches([3, 9, 1, 7, 5], 2)
    assert batches == [[1, 3], [4, 0], [2]]


def test_batched_outputs_align_with_their_prompts(tiny_session):
    model, tokenizer = tiny_session.model, tiny_session.tokenizer
    settings = GenerationSettings(max_new_tokens=6, batch_size=2, raw=True)
    batched = generate_texts(model, tokenizer, PROMPTS, settings).outputs
    one_by_one = [generate_texts(model, tokenizer, [p], settings).outputs[0] for p in PROMPTS]
    assert batched == one_by_one
    assert len({tuple(o) for o in batched}) > 1, "the tiny model should answer different prompts differently"


def test_seeded_sampling_is_reproducible(tiny_session):
    model, tokenizer = tiny_session.model, tiny_session.tokenizer
    settings = GenerationSettings(max_new_tokens=8, temperature=1.0, samples=4, seed=7)
    first = generate_texts(model, tokenizer, PROMPTS[:2], settings).outputs
    assert generate_texts(model, tokenizer, PROMPTS[:2], settings).outputs == first
    other = GenerationSettings(max_new_tokens=8, temperature=1.0, samples=4, seed=8)
    assert generate_texts(model, tokenizer, PROMPTS[:2], other).outputs != first


def test_unseeded_sampling_records_the_seed_it_used(tiny_session):
    run = generate_texts(tiny_session.model, tiny_session.tokenizer, ["a"],
                         GenerationSettings(max_new_tokens=4, temperature=0.8))
    assert isinstance(run.settings.seed, int)
    again = generate_texts(tiny_session.model, tiny_session.tokenizer, ["a"], run.settings)
    assert again.outputs == run.outputs


def test_greedy_samples_repeat_one_output(tiny_session):
    run = generate_texts(tiny_session.model, tiny_session.tokenizer, ["a"], GenerationSettings(max_new_tokens=4,
                                                                                              samples=3))
    assert len(run.outputs[0]) == 3 and len(set(run.outputs[0])) == 1


def test_bad_settings_are_short_errors():
    with pytest.raises(FtpeError, match="--top-p"):
        GenerationSettings(top_p=0)
    with pytest.raises(FtpeError, match="--temperature"):
        GenerationSettings(temperature=-1)


def test_keyboard_interrupt_returns_partial_output(tiny_session, monkeypatch):
    model = tiny_session.model
    real_forward = model.forward
    calls = {"n": 0}

    def forward(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real_forward(*args, **kwargs)

    monkeypatch.setattr(model, "forward", forward)
    run = generate_texts(model, tiny_session.tokenizer, ["a", "bb"], GenerationSettings(max_new_tokens=10, raw=True))
    assert run.interrupted
    full = generate_texts(model, tiny_session.tokenizer, ["a", "bb"], GenerationSettings(max_new_tokens=10, raw=True))
    for partial, complete in zip(run.outputs, full.outputs, strict=True):
        assert partial[0] and complete[0].startswith(partial[0]) and len(partial[0]) < len(complete[0])


def test_out_of_memory_is_a_short_error_and_model_survives(tiny_session, monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(tiny_session.model, "generate", out_of_memory)
    with pytest.raises(FtpeError, match=r"out of memory.*--batch-size 2.*still loaded"):
        generate_texts(tiny_session.model, tiny_session.tokenizer, PROMPTS,
                       GenerationSettings(max_new_tokens=4, batch_size=4))
    monkeypatch.undo()
    assert tiny_session.loaded
    again = tiny_session.prompt("a", max_new_tokens=2)  # the session generates again after the error
    assert not again.interrupted and len(again.outputs) == 1 and again.prompt_tokens[0] > 0


def test_generated_lengths_stop_at_the_end_token_or_the_padding():
    from ftpe_magics.engine.inference.generation import generated_lengths

    new_ids = torch.tensor([[5, 6, 2, 0, 0], [5, 0, 0, 0, 0], [7, 8, 9, 10, 11]])
    # row 0 ends with its end token (counted), row 1 was stopped by another rule (padding after it), row 2 ran out
    assert generated_lengths(new_ids, {2}, pad_id=0) == [3, 1, 5]
    assert generated_lengths(new_ids, {2}, pad_id=None) == [3, 5, 5]


def test_a_run_counts_the_tokens_each_prompt_generated(tiny_session):
    model, tokenizer = tiny_session.model, tiny_session.tokenizer
    settings = GenerationSettings(max_new_tokens=5, batch_size=2, raw=True)
    run = generate_texts(model, tokenizer, PROMPTS, settings)
    assert len(run.new_tokens) == len(PROMPTS) and all(1 <= n <= 5 for n in run.new_tokens)
    for prompt, text, count in zip(PROMPTS, run.outputs, run.new_tokens, strict=True):
        alone = generate_texts(model, tokenizer, [prompt], settings)
        assert alone.outputs[0] == text and alone.new_tokens[0] == count  # batching changes no count
