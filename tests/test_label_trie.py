"""Scoring v2: each context runs once with the label trie packed after it, exact against the naive loop."""

import numpy as np
import pytest
import torch

from ftpe_magics.engine.inference import scoring
from ftpe_magics.engine.inference.label_trie import build_trie
from ftpe_magics.engine.inference.scoring import label_logprobs, naive_label_logprobs

PREFIX = "Classify the review.\n\nReview: great fun\nSentiment: positive\n\nReview: so dull\nSentiment: negative\n\n"
TEXTS = ["a", "the movie was great and i loved it", "bb good", "awful , boring and long", "x", "play some music"]
LABEL_SETS = {
    "single-token": [" a", " b"],
    "different-lengths": [" positive", " negative", " neutral sentiment here", " 1"],
    "shared-prefixes": [" good", " good enough", " good job", " good job there", " bad"],
    "150-labels": [f" intent_{i}_{'x' * (i % 3)}" for i in range(150)],
}
ROWS = [{"text": t, "label": label} for t, label in [
    ("great fun", "positive"), ("so dull", "negative"), ("loved it", "positive"), ("awful film", "negative")]] * 2


def assert_exact(model, tokenizer, contexts, labels, **options):
    fast = label_logprobs(model, tokenizer, contexts, labels, **options)
    naive = naive_label_logprobs(model, tokenizer, contexts, labels)
    np.testing.assert_allclose(fast.logprobs, naive, atol=1e-4)
    assert (fast.logprobs.argmax(1) == naive.argmax(1)).all()
    return fast


@pytest.mark.parametrize("labels", list(LABEL_SETS.values()), ids=list(LABEL_SETS))
@pytest.mark.parametrize("shared", [True, False], ids=["shared-prefix", "per-example-prompts"])
def test_packed_trie_scores_equal_the_naive_loop(tiny_session, labels, shared):
    # per-example prompts (what `similar` selection makes) share nothing but a few tokens
    contexts = [f"{PREFIX}Review: {t}\nSentiment:" if shared else f"{t}\n\nReview: {t[::-1]}\nSentiment:"
                for t in TEXTS]
    fast = assert_exact(tiny_session.model, tiny_session.tokenizer, contexts, labels, batch_size=3)
    assert (fast.prefix_tokens > 10) == shared


@pytest.mark.parametrize("method", ["lora", "prompt-tuning"])
def test_exact_with_adapters(tiny_session, method):
    name = f"v2-{method}"
    tiny_session.finetune("Review: {text}\nSentiment: {label}", ROWS, name, method=method, max_steps=3,
                          batch_size=4, warmup=0, lr=5e-2)
    contexts = [f"{PREFIX}Review: {t}\nSentiment:" for t in TEXTS]
    with tiny_session.using(name):
        assert_exact(tiny_session.model, tiny_session.tokenizer, contexts, LABEL_SETS["shared-prefixes"],
                     batch_size=4)


@pytest.mark.parametrize("norm", ["tokens", "chars"])
def test_length_normalisation_matches_the_naive_loop(tiny_session, norm):
    labels = LABEL_SETS["different-lengths"]
    contexts = [f"{PREFIX}Review: {t}\nSentiment:" for t in TEXTS]
    fast = label_logprobs(tiny_session.model, tiny_session.tokenizer, contexts, labels)
    naive = naive_label_logprobs(tiny_session.model, tiny_session.tokenizer, contexts, labels)
    counts = [len(tiny_session.tokenizer(label, add_special_tokens=False)["input_ids"]) for label in labels]
    divisor = np.asarray(counts if norm == "tokens" else [len(label) for label in labels], float)
    np.testing.assert_allclose(fast.normalised(labels, norm), naive / divisor, atol=1e-4)


def test_each_context_runs_once(tiny_session, monkeypatch):
    labels = LABEL_SETS["150-labels"]
    contexts = [f"Query: {t}\nIntent:" for t in TEXTS]
    fed = []
    real = tiny_session.model.forward

    def counting(*args, **kwargs):
        fed.append(kwargs["input_ids"].numel())
        return real(*args, **kwargs)

    monkeypatch.setattr(tiny_session.model, "forward", counting)
    scored = label_logprobs(tiny_session.model, tiny_session.tokenizer, contexts, labels)
    trie = build_trie([tiny_session.tokenizer(label, add_special_tokens=False)["input_ids"] for label in labels])
    assert sum(fed) == scored.tokens_run >= scored.floor_tokens
    # the floor is the contexts plus the trie once per example; the naive loop runs every context per label
    naive_tokens = sum(p * len(labels) for p in scored.prompt_tokens)
    assert scored.floor_tokens == scored.prefix_tokens + sum(p - scored.prefix_tokens + trie.size
                                                            for p in scored.prompt_tokens)
    assert scored.tokens_run < naive_tokens / 3
    assert trie.size < sum(len(tiny_session.tokenizer(label, add_special_tokens=False)["input_ids"]) - 1
                           for label in labels)  # shared leading tokens are fed once


def test_batches_stay_inside_the_logit_budget_and_stay_exact(tiny_session, monkeypatch):
    rows = []
    real = scoring._forward_packed
    monkeypatch.setattr(scoring, "_forward_packed", lambda model, packed, cache: rows.append(len(packed.input_ids))
                        or real(model, packed, cache))
    vocab = tiny_session.model.get_output_embeddings().weight.shape[0]
    labels = LABEL_SETS["150-labels"]
    trie = build_trie([tiny_session.tokenizer(label, add_special_tokens=False)["input_ids"] for label in labels])
    monkeypatch.setitem(scoring._LOGIT_BYTES, False, 2 * (1 + trie.size) * vocab * 4)  # room for two rows
    contexts = [f"Query: {t}\nIntent:" for t in TEXTS]
    assert_exact(tiny_session.model, tiny_session.tokenizer, contexts, labels, batch_size=32, max_batch_tokens=10**6)
    assert max(rows) == 2 and sum(rows) == len(TEXTS)


def test_trie_shares_leading_tokens():
    trie = build_trie([[5, 6, 7], [5, 6, 8], [5, 9], [4]])
    assert trie.tokens == [5, 6] and trie.depths == [1, 2]  # only prefixes that predict a next token are fed
    assert trie.ancestors.tolist() == [[True, False], [True, True]]
    pairs = list(zip(trie.pair_labels.tolist(), trie.slots.tolist(), trie.pair_tokens.tolist(), strict=True))
    assert pairs == [(0, 0, 5), (0, 1, 6), (0, 2, 7), (1, 0, 5), (1, 1, 6), (1, 2, 8), (2, 0, 5), (2, 1, 9), (3, 0, 4)]


def test_generation_scored_by_its_first_line_stops_there(tiny_session):
    from ftpe_magics.engine.inference.generation import GenerationSettings, generate_texts
    from ftpe_magics.engine.inference.stopping import AnswerEnded

    tokenizer = tiny_session.tokenizer
    prompt = tokenizer("Review: a", return_tensors="pt")["input_ids"]
    stop = AnswerEnded(tokenizer, prompt.shape[1], "line")
    seen = []
    for text in ["\n", "\n great", "\n great film", "\n great film\n", "\n great film\nmore"]:
        ids = torch.cat([prompt, tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]], 1)
        seen.append(bool(stop(ids, None)[0]))
    assert seen == [False, False, False, True, True]  # a leading blank line does not count; a line with content does
    settings = GenerationSettings(max_new_tokens=12, raw=True, batch_size=8)
    full = generate_texts(tiny_session.model, tokenizer, ["Review: a", "Review: bb"], settings)
    first = generate_texts(tiny_session.model, tokenizer, ["Review: a", "Review: bb"], settings, stop="line")
    for whole, cut in zip(full.outputs, first.outputs, strict=True):
        assert whole[0].startswith(cut[0]) and cut[0].strip().splitlines()[:1] == whole[0].strip().splitlines()[:1]


@torch.inference_mode()
def test_embeddings_are_in_the_callers_order_whatever_their_length(tiny_session):
    texts = ["a", "the movie was great and i loved it", "bb", "awful , boring and long"]
    together = scoring.mean_pooled_embeddings(tiny_session.model, tiny_session.tokenizer, texts, batch_size=2)
    alone = np.concatenate([scoring.mean_pooled_embeddings(tiny_session.model, tiny_session.tokenizer, [t])
                            for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_out_of_memory_while_scoring_is_one_line_and_the_model_stays(tiny_session, monkeypatch):
    from ftpe_magics import FtpeError

    model = tiny_session.model

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(model, "forward", out_of_memory)
    with pytest.raises(FtpeError, match=r"out of memory while scoring a batch.*smaller --batch-size.*still loaded"):
        label_logprobs(model, tiny_session.tokenizer, ["Review: a\nSentiment:"], LABEL_SETS["150-labels"])
    monkeypatch.undo()
    assert tiny_session.loaded and tiny_session.model is model
