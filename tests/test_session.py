import pandas as pd
import pytest

from ftpe_magics import FtpeError, Session
from ftpe_magics.display.html import prompt_result_html


def test_load_status_unload_reload(tiny_model_dir, tmp_path):
    session = Session(log=lambda m: None)
    session.config.cache_dir = str(tmp_path)
    assert not session.loaded
    session.load(str(tiny_model_dir))
    status = session.status()
    assert status["device"] == "cpu" and status["dtype"] == "fp32 (--dtype fp32)"
    assert int(status["parameters"].replace(",", "")) == session.parameter_count() > 0
    assert "process rss" in status and status["cache folder"] == str(tmp_path)  # not under home, so shown as is
    assert session.tokenizer.padding_side == "left"
    session.unload()
    assert not session.loaded and session.model is None
    session.load(str(tiny_model_dir))
    assert session.loaded and session.load_count == 2


def test_missing_local_folder_is_a_short_error(tiny_session):
    with pytest.raises(FtpeError, match="No model folder"):
        tiny_session.load("./no/such/model")
    with pytest.raises(FtpeError, match="No GGUF file"):
        tiny_session.load("missing.gguf")
    assert tiny_session.loaded


def test_unreachable_hub_id_keeps_the_current_model(tiny_session, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)  # read at import time: patch it too
    with pytest.raises(FtpeError) as info:
        tiny_session.load("some-org/no-such-model")
    assert "hub is unreachable" in str(info.value) and "local folder" in str(info.value)
    assert tiny_session.loaded and tiny_session.prompt("a", max_new_tokens=2).outputs


def test_prompt_over_dataframe_list_and_dicts_keeps_row_alignment(tiny_session):
    frame = pd.DataFrame({"text": ["a", "bb good", "ccc"], "id": [10, 11, 12]})
    result = tiny_session.prompt("Review: {text} {suffix}", {"suffix": "!"}, over=frame, max_new_tokens=3)
    assert result.prompts == ["Review: a !", "Review: bb good !", "Review: ccc !"]
    table = result.to_pandas()
    assert list(table["id"]) == [10, 11, 12] and list(table["output"]) == result.texts
    assert tiny_session.prompt("{item}", over=["x", "y"], max_new_tokens=2).prompts == ["x", "y"]
    assert tiny_session.prompt("{q}", over=[{"q": "x"}], max_new_tokens=2).prompts == ["x"]
    with pytest.raises(FtpeError, match="empty"):
        tiny_session.prompt("{item}", over=[])


def test_result_text_and_multi_prompt_guard(tiny_session):
    single = tiny_session.prompt("hello", max_new_tokens=3)
    assert single.text == single.texts[0]
    many = tiny_session.prompt("{item}", over=["a", "b"], max_new_tokens=2)
    with pytest.raises(FtpeError, match=".texts"):
        _ = many.text


def test_named_rerun_carries_previous_and_diff(tiny_session):
    first = tiny_session.prompt("Review: great", name="diffme", max_new_tokens=3)
    second = tiny_session.prompt("Review: awful", name="diffme", max_new_tokens=4)
    assert second.previous is first
    text = str(second)
    assert "max_new_tokens: 3 -> 4" in text and "-Review: great" in text and "+Review: awful" in text
    html = prompt_result_html(second)
    assert "<del" in html and "great" in html and "<ins" in html and "awful" in html
    assert len(tiny_session.history_table()) == len(tiny_session.history)


def test_samples_are_grouped_with_counts(tiny_session):
    result = tiny_session.prompt("a", max_new_tokens=2, temperature=5.0, samples=6, seed=1)
    counts = result.sample_counts()
    assert sum(count for _, count in counts) == 6 and counts == sorted(counts, key=lambda c: -c[1])
    assert result.consistency() == counts[0][1] / 6  # the most common output's share of the samples
    assert "&times;" in prompt_result_html(result)


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")
def test_unload_gives_gpu_memory_back(tiny_model_dir, tmp_path):
    import torch

    before = torch.cuda.memory_allocated()
    session = Session(log=lambda m: None)
    session.config.cache_dir = str(tmp_path)
    session.load(str(tiny_model_dir), device="cuda")
    session.prompt("hello", max_new_tokens=4)
    assert torch.cuda.memory_allocated() > before
    session.unload()
    assert torch.cuda.memory_allocated() <= before * 1.05 + 1024
