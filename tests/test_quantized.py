"""4-bit and 8-bit models (bitsandbytes' CPU backend) and QLoRA, on the real default model."""

from __future__ import annotations

import pytest
import torch

from ftpe_magics import FtpeError, Session

pytestmark = pytest.mark.integration
TEMPLATE = "Review: {text}\nSentiment: {label}"
ROWS = ([{"text": f"a wonderful, moving film {i}", "label": "positive"} for i in range(8)]
        + [{"text": f"a dull and tiresome mess {i}", "label": "negative"} for i in range(8)])


def _logits(model, session: Session) -> torch.Tensor:
    inputs = session.tokenizer(["Review: a lovely film\nSentiment:", "Review: so boring\nSentiment:"],
                               return_tensors="pt", padding=True)
    with torch.no_grad():
        return model(**inputs).logits.float()


@pytest.fixture(scope="module")
def four_bit() -> Session:
    return Session(log=lambda message: None).load(quantize="4bit")


def test_qlora_trains_and_leaves_the_4bit_base_as_it_was(four_bit, default_session):
    session = four_bit
    assert session.status()["placement"] == "4bit (bitsandbytes)"
    assert all(not p.requires_grad for p in session.base_model.parameters())
    base_before = _logits(session.base_model, session)
    # quantised, not the fp32 model: close to it, not equal
    full_precision = _logits(default_session.base_model, default_session)
    assert not torch.equal(base_before, full_precision)
    assert torch.corrcoef(torch.stack([base_before[:, -1].flatten(), full_precision[:, -1].flatten()]))[0, 1] > 0.9
    adapter = session.finetune(TEMPLATE, ROWS, "qlora", max_steps=4, batch_size=4, lr=2e-3, warmup=0)
    losses = [r["loss"] for r in adapter.history if "loss" in r]
    assert len(losses) == 4 and all(torch.isfinite(torch.tensor(losses)))
    assert torch.equal(_logits(session.base_model, session), base_before)  # the base, exactly as loaded
    with session.using("qlora"):
        assert not torch.allclose(_logits(session.model, session), base_before)
    with pytest.raises(FtpeError, match="use --method lora"):
        session.finetune(TEMPLATE, ROWS, "copy", method="full", max_steps=1)
    with pytest.raises(FtpeError, match="Load the model unquantised"):
        session.export("qlora", "/nonexistent/never-written")


def test_8bit_model_scores_close_to_the_full_precision_one(default_session):
    session = Session(log=lambda message: None).load(quantize="8bit")
    eight, full = _logits(session.base_model, session), _logits(default_session.base_model, default_session)
    assert not torch.equal(eight, full)
    assert torch.corrcoef(torch.stack([eight[:, -1].flatten(), full[:, -1].flatten()]))[0, 1] > 0.9
    assert session.environment()["placement"] == {"quantize": "8bit"}  # part of every cached result's key
