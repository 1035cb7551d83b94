"""--metric json / json-exact: the first JSON object of an output, field-level F1, the format report; and metrics
that return a dict of named scores (the first the accuracy, the others columns)."""

from __future__ import annotations

import pytest

from ftpe_magics import FtpeError
from ftpe_magics.engine.evaluation import evaluator as evaluator_module
from ftpe_magics.engine.evaluation.metrics import apply_metric, resolve_metric
from ftpe_magics.engine.evaluation.structured import first_json_object, json_exact, json_f1, parse_report
from ftpe_magics.engine.inference.generation import GenerationRun, GenerationSettings

REFERENCE = '{"city": "Paris", "date": "tomorrow", "people": "2", "artist": ["Muse", "Blur"]}'


def test_the_first_json_object_is_found_and_text_around_it_is_said():
    parsed = first_json_object('Sure! Here it is: {"city": "Rome"} Hope that helps.')
    assert parsed.value == {"city": "Rome"} and parsed.surrounded and parsed.failure is None
    assert first_json_object('{"a": 1}').surrounded is False
    assert first_json_object("[1, 2] and {oops} then {\"b\": 2}").value == {"b": 2}  # skips what does not parse
    assert first_json_object("no braces here").failure == "no JSON object"
    assert first_json_object('{"city": "Rome"').failure.startswith("invalid JSON (")
    assert first_json_object("[1, 2]").failure == "no JSON object"


def test_field_level_f1_is_order_free_normalised_and_counts_each_field():
    same_fields_other_order = '{"artist": ["blur", "muse"], "people": "2", "date": " Tomorrow ", "city": "paris"}'
    assert json_f1(same_fields_other_order, REFERENCE) == {"json": 1.0, "valid_rate": 1.0}
    one_wrong = '{"city": "Lyon", "date": "tomorrow", "people": "2", "artist": ["Muse", "Blur"]}'
    assert json_f1(one_wrong, REFERENCE)["json"] == pytest.approx(4 / 5)  # 4 of 5 pairs right both ways
    missing_one = '{"city": "Paris", "date": "tomorrow", "people": "2", "artist": ["Muse"]}'
    precision, recall = 1.0, 4 / 5
    assert json_f1(missing_one, REFERENCE)["json"] == pytest.approx(2 * precision * recall / (precision + recall))
    assert json_f1("Paris tomorrow", REFERENCE) == {"json": 0.0, "valid_rate": 0.0}
    assert json_f1("{}", "{}")["json"] == 1.0 and json_f1('{"a": "b"}', "{}")["json"] == 0.0
    assert json_f1('{"artist": ["Muse", "Muse"]}', '{"artist": ["Muse"]}')["json"] == pytest.approx(2 / 3)


def test_json_exact_needs_every_pair():
    assert json_exact('{"artist": ["Blur", "Muse"], "people": "2", "date": "tomorrow", "city": "Paris"}',
                      REFERENCE)["json-exact"] == 1.0
    assert json_exact('{"city": "Paris"}', REFERENCE) == {"json-exact": 0.0, "valid_rate": 1.0}


def test_a_reference_that_is_not_json_is_one_line_naming_it():
    with pytest.raises(FtpeError, match="Metric json failed .*the reference is not a JSON object"):
        apply_metric(resolve_metric("json")[1], "json", '{"a": 1}', "Paris")


def test_a_dict_metric_gives_named_scores_and_each_is_checked():
    assert apply_metric(lambda p, r: {"f1": 0.5, "valid": 1}, "mine", "x", "y") == {"f1": 0.5, "valid": 1.0}
    assert apply_metric(lambda p, r: 0.25, "mine", "x", "y") == {"mine": 0.25}
    with pytest.raises(FtpeError, match="returned valid=2.0"):
        apply_metric(lambda p, r: {"f1": 0.5, "valid": 2}, "mine", "x", "y")
    with pytest.raises(FtpeError, match="returned an empty dict"):
        apply_metric(lambda p, r: {}, "mine", "x", "y")


def test_the_format_report_counts_parsed_outputs_and_the_commonest_failures():
    report = parse_report(['{"a": 1}', 'ok {"a": 1}', "nothing", "none", '{"a": '])
    assert report["valid"] == 2 and report["surrounded"] == 1
    assert report["failures"][0] == ("no JSON object", 2) and report["failures"][1][0].startswith("invalid JSON")


ROWS = [{"text": "a table for 2 in paris tomorrow", "label": '{"city": "paris", "people": "2", "date": "tomorrow"}'},
        {"text": "play muse", "label": '{"artist": "muse"}'},
        {"text": "weather in rome", "label": '{"city": "rome"}'},
        {"text": "book lyon", "label": '{"city": "lyon"}'}]
ANSWERS = {"a table for 2 in paris tomorrow": 'Here: {"date": "tomorrow", "city": "Paris", "people": "2"}',
           "play muse": '{"artist": "blur"}', "weather in rome": "rome", "book lyon": '{"city": "lyon"'}


@pytest.fixture
def scripted_outputs(monkeypatch):
    """The model's answers replaced by fixed ones, so the scores are known; everything after generation (the
    metric, the table, the report, the store) runs as it does for real outputs."""
    def generate(model, tokenizer, prompts, settings, stop=None):
        answers = [next(a for text, a in ANSWERS.items() if text in prompt) for prompt in prompts]
        return GenerationRun([[a] for a in answers], [len(p) for p in prompts], 0.01, GenerationSettings())

    monkeypatch.setattr(evaluator_module, "generate_texts", generate)


def test_a_json_comparison_has_valid_rate_and_says_why_outputs_failed(tiny_session, scripted_outputs):
    result = tiny_session.compare("slots: prompt Slots of: {text}", ROWS, metric="json")
    row = result.to_pandas().iloc[0]
    assert row["accuracy"] == pytest.approx((1.0 + 0.0 + 0.0 + 0.0) / 4) and row["valid_rate"] == 0.5
    assert result.metric_columns() == ["valid_rate"] and "valid_rate" in str(result)
    notice = next(line for line in result.notices() if line.startswith("slots:"))
    assert "2 of 4 outputs hold no JSON object" in notice and "no JSON object (1)" in notice
    assert "invalid JSON" in notice and "1 had text around the object" in notice
    from ftpe_magics.display.html import summary_html

    assert "valid_rate" in summary_html(result) and "hold no JSON object" in summary_html(result)


def test_a_user_metric_dict_becomes_columns_and_survives_the_store(tiny_model_dir, tmp_path, scripted_outputs):
    from ftpe_magics import Session

    def graded(prediction, reference):
        return {"found": float(reference.split('"')[3] in prediction.lower()), "braces": float("{" in prediction)}

    session = Session(log=lambda message: None)
    session.config.cache_dir, session.config.store = str(tmp_path / "cache"), str(tmp_path / "runs.sqlite")
    session.load(str(tiny_model_dir))
    fresh = session.compare("slots: prompt Slots of: {text}", ROWS, metric="graded", namespace={"graded": graded})
    cached = session.compare("slots: prompt Slots of: {text}", ROWS, metric="graded", namespace={"graded": graded})
    for result in (fresh, cached):
        row = result.to_pandas().iloc[0]
        assert row["accuracy"] == 0.75 and row["braces"] == 0.75 and result.metric_columns() == ["braces"]
    assert cached.conditions[0].extra["metric_scores"] == fresh.conditions[0].extra["metric_scores"]


def test_rouge_l_and_chrf_are_the_libraries_numbers():
    pytest.importorskip("rouge_score")
    pytest.importorskip("sacrebleu")
    from sacrebleu import corpus_chrf

    from ftpe_magics.engine.evaluation.metrics import chrf, rouge_l

    # LCS "the cat on the mat" (5 of the reference's 6 words): P = 1, R = 5/6, F = 10/11
    assert rouge_l("the cat on the mat", "the cat sat on the mat") == pytest.approx(10 / 11)
    assert rouge_l("cats running", "cat runs") == pytest.approx(1.0)  # Porter stemming, as rouge-score's examples
    assert rouge_l("nothing alike", "the cat sat") == 0.0
    pairs = [("the cat sat on the mat", "a cat sat on a mat"), ("book a table in paris", "reserve a table in paris")]
    for prediction, reference in pairs:
        assert chrf(prediction, reference) == pytest.approx(corpus_chrf([prediction], [[reference]]).score / 100)
        assert 0.0 < chrf(prediction, reference) < 1.0
    assert chrf("paris", "paris") == pytest.approx(1.0)


def test_similarity_is_the_cosine_of_the_models_pooled_states(tiny_session, monkeypatch):
    import numpy as np

    from ftpe_magics.engine.inference.scoring import mean_pooled_embeddings

    answers = {"first": "a sunny day in rome", "second": "", "third": "weather rome"}
    rows = [{"text": "first", "label": "a sunny day in rome"}, {"text": "second", "label": "rome"},
            {"text": "third", "label": "the weather in rome"}]

    def generate(model, tokenizer, prompts, settings, stop=None):
        texts = [next(a for key, a in answers.items() if key in prompt) for prompt in prompts]
        return GenerationRun([[t] for t in texts], [1] * len(prompts), 0.01, GenerationSettings())

    monkeypatch.setattr(evaluator_module, "generate_texts", generate)
    result = tiny_session.compare("sim: prompt Say: {text}", rows, metric="similarity")
    a, b = mean_pooled_embeddings(tiny_session.model, tiny_session.tokenizer, ["weather rome", "the weather in rome"])
    assert result.conditions[0].scores == pytest.approx([1.0, 0.0, max(0.0, float(np.dot(a, b)))], abs=1e-5)


def test_samples_of_a_structured_answer_agree_when_their_objects_do():
    from ftpe_magics.engine.evaluation.structured import canonical_answer

    same = ['{"city": "Paris", "date": "today"}', 'ok: {"date": "today",  "city": "paris"}']
    assert canonical_answer(same[0]) == canonical_answer(same[1])
    assert canonical_answer('{"city": "Rome"}') != canonical_answer(same[0])
    assert canonical_answer("nothing") == "<no JSON object>"


def test_the_verdict_says_the_share_of_valid_json(tiny_session, scripted_outputs):
    rows = ROWS
    result = tiny_session.compare("slots: prompt Slots of: {text}\nother: prompt Give the slots of: {text}", rows,
                                  metric="json")
    from ftpe_magics.engine.evaluation.verdict import _consistency

    line = _consistency(result.conditions[0], result.conditions[1], {})
    assert "valid JSON in 50.0% of outputs" in line


def test_a_generated_answer_reports_the_tokens_it_took(tiny_session):
    result = tiny_session.compare("say: prompt Say: {text}", ROWS, metric="f1", max_new_tokens=3)
    counts = result.conditions[0].extra["tokens_generated"]
    assert len(counts) == len(ROWS) and all(1 <= count <= 3 for count in counts)
    assert result.to_pandas().iloc[0]["tokens_generated"] == pytest.approx(sum(counts) / len(counts))
    from ftpe_magics.display.html import summary_html

    assert "tokens_generated" in summary_html(result)


@pytest.mark.parametrize(("text", "done", "scored"), [
    ('{\n  "city": "rome",\n  "date": "today"\n}\nmore', True, '{\n  "city": "rome",\n  "date": "today"\n}'),
    ('Here: {"a": "}{"} and then', True, 'Here: {"a": "}{"}'),  # braces inside a string do not close it
    ('{\n  "city": "ro', False, '{\n  "city": "ro'),  # still open: generation goes on
    ("I cannot help with that.\nSorry", True, "I cannot help with that."),  # prose: its first line, and stop
    ('{"a": {"b": "c"}}', True, '{"a": {"b": "c"}}'),
])
def test_a_structured_answer_ends_with_its_first_object_even_across_lines(text, done, scored):
    from ftpe_magics.engine.inference.stopping import answer_done, scored_part

    assert answer_done(text, "object") is done
    assert scored_part(text, "object") == scored


def test_a_pretty_printed_answer_is_scored_whole(tiny_session, monkeypatch):
    """An instruct model writes JSON over several lines: the metric reads the whole object, not its first line."""
    def generate(model, tokenizer, prompts, settings, stop=None):
        assert stop == "object"
        return GenerationRun([['{\n  "city": "rome"\n}\nAnything else?'] for _ in prompts], [1] * len(prompts), 0.01,
                             GenerationSettings())

    monkeypatch.setattr(evaluator_module, "generate_texts", generate)
    rows = [{"text": "weather in rome", "label": '{"city": "rome"}'}]
    result = tiny_session.compare("p: prompt Slots of: {text}", rows, metric="json")
    assert result.conditions[0].scores == [1.0] and result.conditions[0].extra["format"]["surrounded"] == 0
