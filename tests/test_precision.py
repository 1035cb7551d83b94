"""--dtype auto: bf16 where the CPU computes it natively (said by %ftpe status), fp32 elsewhere; over a bf16 base
every method trains fp32 weights, and bf16 scores stay close to fp32's (the exact scoring)."""

import numpy as np
import pytest
import torch
from tiny_model import save_tiny_model  # noqa: F401  (the tiny model the fixtures build)

from ftpe_magics import Session
from ftpe_magics.engine.inference.scoring import label_logprobs
from ftpe_magics.engine.model import precision

TEMPLATE = "Review: {text}\nSentiment: {label}"
ROWS = [{"text": t, "label": label} for t, label in [
    ("great fun", "positive"), ("so dull", "negative"), ("loved it", "positive"), ("awful film", "negative"),
    ("a joy", "positive"), ("boring", "negative"), ("superb", "positive"), ("a mess", "negative")]]


@pytest.mark.parametrize("native", ["AVX512-BF16", None])
def test_auto_trains_on_a_bf16_copy_only_where_the_cpu_computes_bf16_natively(tiny_model_dir, monkeypatch, native):
    monkeypatch.setattr(precision, "native_bf16_cpu", lambda: native)
    session = Session(log=lambda message: None).load(str(tiny_model_dir), dtype="auto")
    status = session.status()
    assert session.base_model.dtype == torch.float32  # scoring stays exact
    if native:
        assert status["dtype"].startswith("fp32 (auto: this CPU computes bf16 natively (AVX512-BF16): scoring in "
                                          "fp32, training on a bf16 base")
        assert status["training dtype"] == "bf16"
    else:
        assert status["dtype"] == "fp32 (auto: fp32 on this CPU (no native bf16))"
        assert status["training dtype"] == "fp32"
    before = session.base_model.lm_head.weight.clone()
    adapter = session.finetune(TEMPLATE, ROWS, "auto-lora", method="lora", max_steps=3, batch_size=4, lr=1e-2)
    assert all(tensor.dtype == torch.float32 for tensor in adapter.state.values())
    copy = session.loaded_model._training_copy
    assert (copy is not None and copy.dtype == torch.bfloat16) if native else copy is None
    assert torch.equal(session.base_model.lm_head.weight, before)
    assert not [name for name, _ in (copy or session.base_model).named_modules() if "lora" in name]
    assert len(session.compare("c: adapter auto-lora", ROWS).conditions[0].predictions) == len(ROWS)
    session.unload(quiet=True)
    assert session.loaded_model._training_copy is None  # freed with the model
    assert precision.auto_precision("cuda").weights == torch.bfloat16
    exact = Session(log=lambda message: None).load(str(tiny_model_dir), dtype="fp32")
    assert exact.base_model.dtype == torch.float32 and exact.status()["dtype"] == "fp32 (--dtype fp32)"


@pytest.fixture(scope="module")
def bf16_session(tiny_model_dir):
    return Session(log=lambda message: None).load(str(tiny_model_dir), dtype="bf16")


def test_bf16_scores_are_close_to_fp32(tiny_session, bf16_session):
    contexts = [f"Review: {row['text']}\nSentiment:" for row in ROWS]
    exact = label_logprobs(tiny_session.model, tiny_session.tokenizer, contexts, [" positive", " negative"])
    fast = label_logprobs(bf16_session.model, bf16_session.tokenizer, contexts, [" positive", " negative"])
    np.testing.assert_allclose(fast.logprobs, exact.logprobs, atol=0.1)  # bf16 keeps about 3 significant digits


@pytest.mark.parametrize("method", ["lora", "full", "prompt-tuning", "ia3", "head", "probe"])
def test_every_method_trains_fp32_weights_over_a_bf16_base(bf16_session, method):
    adapter = bf16_session.finetune(TEMPLATE, ROWS, f"bf16-{method}", method=method, max_steps=4, batch_size=4,
                                    eval=ROWS[:4], **({} if method == "probe" else {"lr": 1e-2}))
    trained = list((adapter.state or {}).values())
    if adapter.model is not None:
        trained = list(adapter.model.parameters())
    if adapter.head is not None:
        trained.append(adapter.head.weight)
    assert trained and all(tensor.dtype == torch.float32 for tensor in trained)
    assert bf16_session.base_model.dtype == torch.bfloat16 and 0 <= adapter.best_metric <= 1
    scored = bf16_session.compare(f"c: adapter bf16-{method}", ROWS).conditions[0]
    assert len(scored.predictions) == len(ROWS)
