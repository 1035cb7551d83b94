"""One call's shared scoring work: a context scored before is read back, a prefix starts from a cached one, and
the scores equal unshared scoring."""

import numpy as np

from ftpe_magics.engine.inference.scoring import label_logprobs
from ftpe_magics.engine.inference.shared_work import MAX_PREFIXES, SharedScoring

DEMOS = "Classify the review.\n\nReview: great fun\nSentiment: positive\n\nReview: so dull\nSentiment: negative\n\n"
OTHER = "Classify the review.\n\nReview: so dull\nSentiment: negative\n\nReview: great fun\nSentiment: positive\n\n"
TEXTS = ["a", "the movie was great and i loved it", "bb good", "awful , boring and long"]
LABELS = [" positive", " negative"]


def contexts(prefix: str, texts=TEXTS) -> list[str]:
    return [f"{prefix}Review: {text}\nSentiment:" for text in texts]


def test_shared_scores_equal_unshared_and_repeats_run_nothing(tiny_session):
    model, tokenizer = tiny_session.model, tiny_session.tokenizer
    call = SharedScoring()
    share = call.for_weights("base")
    first = label_logprobs(model, tokenizer, contexts(DEMOS), LABELS, batch_size=2, share=share)
    plain = label_logprobs(model, tokenizer, contexts(DEMOS), LABELS, batch_size=2)
    np.testing.assert_allclose(first.logprobs, plain.logprobs, atol=1e-5)
    ran = call.tokens_run
    again = label_logprobs(model, tokenizer, contexts(DEMOS, TEXTS[::-1]), LABELS, batch_size=3, share=share)
    np.testing.assert_allclose(again.logprobs, plain.logprobs[::-1], atol=1e-5)
    assert call.tokens_run == ran and again.tokens_run == 0 and again.complete.all()
    other_labels = label_logprobs(model, tokenizer, contexts(DEMOS), [" good", " bad"], share=share)
    assert other_labels.tokens_run > 0  # the label tokens are part of the key
    assert call.token_ids[(True, contexts(DEMOS)[0])] == tokenizer(contexts(DEMOS)[0])["input_ids"]
    assert len(call.token_ids) == len(TEXTS) + 4  # each text tokenised once: the contexts and the 4 labels


def test_a_new_prefix_starts_from_the_cached_one_it_shares_most_with(tiny_session):
    model, tokenizer = tiny_session.model, tiny_session.tokenizer
    call = SharedScoring()
    share = call.for_weights("base")
    label_logprobs(model, tokenizer, contexts(DEMOS), LABELS, share=share)
    reused = call.tokens_reused
    shared = label_logprobs(model, tokenizer, contexts(OTHER, ["new", "texts here"]), LABELS, share=share)
    plain = label_logprobs(model, tokenizer, contexts(OTHER, ["new", "texts here"]), LABELS)
    np.testing.assert_allclose(shared.logprobs, plain.logprobs, atol=1e-5)
    instructions = len(tokenizer("Classify the review.\n\nReview: ")["input_ids"]) - 1
    assert call.tokens_reused - reused >= instructions  # the instructions were not run again
    assert shared.tokens_run < plain.tokens_run
    for number in range(MAX_PREFIXES + 3):  # the prefixes kept are bounded
        label_logprobs(model, tokenizer, contexts(f"Note {number} " * 3 + DEMOS, ["q"]) * 2, LABELS, share=share)
    assert len(share.share.prefixes) == MAX_PREFIXES


def test_weights_keys_share_nothing(tiny_session):
    model, tokenizer = tiny_session.model, tiny_session.tokenizer
    call = SharedScoring()
    label_logprobs(model, tokenizer, contexts(DEMOS), LABELS, share=call.for_weights("load-1:base"))
    later = label_logprobs(model, tokenizer, contexts(DEMOS), LABELS, share=call.for_weights("load-2:base"))
    assert later.tokens_run > 0 and call.tokens_reused == 0


def test_the_session_shares_only_inside_a_call_and_only_on_the_base(tiny_session):
    assert tiny_session.scoring_share is None
    with tiny_session.sharing_work() as outer:
        with tiny_session.sharing_work() as inner:
            assert inner is outer  # a call inside another shares the outer one's work
        assert tiny_session.scoring_share is not None
    assert tiny_session.shared_work is None and tiny_session.scoring_share is None


def test_a_cross_validated_search_reuses_work_and_chooses_as_without_it(tiny_session, monkeypatch):
    from fewshot_data import EVAL, POOL, TEMPLATE

    from ftpe_magics.engine import workbench

    options = dict(k=2, search=6, search_k="0,1,2", cv=3)
    shared = tiny_session.fewshot(TEMPLATE, POOL, EVAL, **options)
    calls = []
    real = workbench.SharedScoring

    def counting():
        calls.append(real())
        return calls[-1]

    monkeypatch.setattr(workbench, "SharedScoring", counting)
    again = tiny_session.fewshot(TEMPLATE, POOL, EVAL, no_cache=True, **options)
    assert calls and calls[0].tokens_reused > 0
    monkeypatch.setattr(type(tiny_session), "scoring_share", property(lambda self: None))
    unshared = tiny_session.fewshot(TEMPLATE, POOL, EVAL, no_cache=True, **options)
    assert [row["val_accuracy"] for row in again.search_log] == [row["val_accuracy"] for row in unshared.search_log]
    assert again.conditions[0].predictions == unshared.conditions[0].predictions == shared.conditions[0].predictions
