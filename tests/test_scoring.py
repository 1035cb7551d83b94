import numpy as np
import pytest
import torch

from ftpe_magics.engine.inference.kv_cache import cache_field
from ftpe_magics.engine.inference.scoring import label_logprobs, naive_label_logprobs

PREFIX = "Classify the review.\n\nReview: great fun\nSentiment: positive\n\nReview: so dull\nSentiment: negative\n\n"
TEXTS = ["a", "the movie was great and i loved it", "bb good", "awful , boring and long", "x"]


@pytest.mark.parametrize("labels", [[" positive", " negative"], [" 1", " 2", " neutral"], [" a", " b"]])
@pytest.mark.parametrize("batch_size", [1, 4, 32])
def test_batched_cached_scores_equal_naive_forward_passes(tiny_session, labels, batch_size):
    contexts = [f"{PREFIX}Review: {text}\nSentiment:" for text in TEXTS]
    fast = label_logprobs(tiny_session.model, tiny_session.tokenizer, contexts, labels, batch_size=batch_size)
    naive = naive_label_logprobs(tiny_session.model, tiny_session.tokenizer, contexts, labels)
    assert fast.prefix_tokens > 10
    np.testing.assert_allclose(fast.logprobs, naive, atol=1e-4)


def test_prefix_is_computed_once_and_reused(tiny_session, monkeypatch):
    contexts = [f"{PREFIX}Review: {text}\nSentiment:" for text in TEXTS]
    widths = []
    real_forward = tiny_session.model.forward

    def counting_forward(*args, **kwargs):
        widths.append((kwargs["input_ids"].shape, kwargs.get(cache_field()) is not None))
        return real_forward(*args, **kwargs)

    monkeypatch.setattr(tiny_session.model, "forward", counting_forward)
    scored = label_logprobs(tiny_session.model, tiny_session.tokenizer, contexts, [" positive", " negative"],
                            batch_size=2)
    prefix_calls = [shape for shape, cached in widths if not cached]
    assert prefix_calls == [torch.Size([1, scored.prefix_tokens])]
    assert all(cached and shape[1] < scored.prefix_tokens for shape, cached in widths[1:])
    assert len(widths) == 1 + 3  # prefix + ceil(5 / 2) batches, all labels of an example in one row


def test_token_budget_batches():
    from ftpe_magics.engine.inference.scoring import token_budget_batches

    assert token_budget_batches([10, 9, 5, 5, 5], batch_size=8, budget=20) == [[0, 1], [2, 3, 4]]
    assert token_budget_batches([3, 3, 3], batch_size=2, budget=100) == [[0, 1], [2]]
    assert token_budget_batches([50, 1], batch_size=8, budget=20) == [[0], [1]]


def test_no_shared_prefix_still_exact(tiny_session):
    contexts = ["hello there", "what is the weather like", "x"]
    fast = label_logprobs(tiny_session.model, tiny_session.tokenizer, contexts, [" yes", " no"], batch_size=2)
    naive = naive_label_logprobs(tiny_session.model, tiny_session.tokenizer, contexts, [" yes", " no"])
    np.testing.assert_allclose(fast.logprobs, naive, atol=1e-4)


def test_length_normalisation(tiny_session):
    scored = label_logprobs(tiny_session.model, tiny_session.tokenizer, ["Review: a\nSentiment:"],
                            [" positive", " 1"])
    per_token = scored.normalised(["positive", "1"], "tokens")
    np.testing.assert_allclose(per_token, scored.logprobs / np.array(scored.label_token_counts))
    assert scored.normalised(["positive", "1"], "chars")[0, 0] == pytest.approx(scored.logprobs[0, 0] / 8)

