"""--metric judge and pairwise judging: the grade is a likelihood over a fixed set, checked against the model's own
logits; position bias is counted, not taken for a preference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ftpe_magics import FtpeError
from ftpe_magics.engine.evaluation import judge as judge_module
from ftpe_magics.engine.evaluation.judge import Judge, agreement_with_exact, judge_from_options, judged_scores

TEMPLATE = "Reference: {reference}\nAnswer: {output}\nIs the answer right? Reply yes or no."
ROWS = [{"text": "weather in rome", "label": "rome"}, {"text": "play muse", "label": "muse"},
        {"text": "book lyon", "label": "lyon"}, {"text": "a table in paris", "label": "paris"}]


def _grade_by_hand(model, tokenizer, prompt: str, grades: list[str]) -> np.ndarray:
    """The judge's probabilities over the grades, from the model's logits one token at a time."""
    context = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                            tokenize=False)
    context_ids = tokenizer(context, add_special_tokens=False)["input_ids"]
    totals = []
    for grade in grades:
        grade_ids = tokenizer(grade, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([context_ids + grade_ids])
        with torch.no_grad():
            logprobs = torch.log_softmax(model(ids).logits[0].float(), dim=-1)
        totals.append(sum(logprobs[len(context_ids) - 1 + i, token].item() for i, token in enumerate(grade_ids)))
    weights = np.exp(np.array(totals) - max(totals))
    return weights / weights.sum()


def test_a_judge_score_is_the_expected_grade_of_the_models_likelihoods(tiny_session):
    outputs = ["rome", "blur", "lyon city", ""]
    references = [row["label"] for row in ROWS]
    judge = Judge(TEMPLATE, ("bad", "fair", "good"))
    scores, stopped = judged_scores(judge, tiny_session.model, tiny_session.tokenizer, outputs, references, ROWS, 2)
    assert not stopped
    for output, reference, score in zip(outputs, references, scores, strict=True):
        prompt = TEMPLATE.format(reference=reference, output=output)
        probabilities = _grade_by_hand(tiny_session.model, tiny_session.tokenizer, prompt, list(judge.grades))
        assert score == pytest.approx(float(probabilities @ np.array([0.0, 0.5, 1.0])), abs=1e-5)
    again, _ = judged_scores(judge, tiny_session.model, tiny_session.tokenizer, outputs, references, ROWS, 4)
    assert again == pytest.approx(scores, abs=1e-6)  # deterministic, whatever the batch


def test_agreement_with_exact_match_and_kappa():
    outputs, references = ["a", "b", "c", "d"], ["a", "b", "x", "y"]  # exact: pass, pass, fail, fail
    agreement = agreement_with_exact([0.9, 0.2, 0.1, 0.3], outputs, references)
    assert agreement["agreement"] == 0.75 and agreement["judge_pass"] == 0.25 and agreement["exact_pass"] == 0.5
    # chance agreement 0.25 * 0.5 + 0.75 * 0.5 = 0.5, so kappa = (0.75 - 0.5) / 0.5
    assert agreement["kappa"] == pytest.approx(0.5)


@pytest.mark.parametrize(("name", "namespace", "grades", "message"), [
    (None, {}, None, "needs --judge-template VAR"),
    ("nosuch", {}, None, "no notebook variable of that name"),
    ("t", {"t": "Grade {reference}"}, None, "lacks {output}"),
    ("t", {"t": "Grade {output}"}, None, "lacks {reference} or {rubric}"),
    ("t", {"t": TEMPLATE}, "yes", "two or more distinct grades"),
    ("t", {"t": TEMPLATE}, "no,no", "two or more distinct grades"),
])
def test_a_judge_without_what_it_needs_is_one_line(name, namespace, grades, message):
    with pytest.raises(FtpeError, match=message.replace("{", r"\{").replace("}", r"\}")):
        judge_from_options(name, grades, namespace)


def test_a_rubric_judge_fills_from_the_notebook():
    judge = judge_from_options("t", "1,2,3", {"t": "Rubric: {rubric}\nAnswer: {output}"})
    assert judge.grades == ("1", "2", "3")


def test_a_comparison_judged_says_how_far_to_trust_it_and_is_cached(tiny_model_dir, tmp_path, monkeypatch):
    from ftpe_magics import Session

    tiny_session = Session(log=lambda message: None)
    tiny_session.config.cache_dir, tiny_session.config.store = str(tmp_path / "c"), str(tmp_path / "runs.sqlite")
    tiny_session.config.max_new_tokens = 8
    tiny_session.load(str(tiny_model_dir))
    namespace = {"grader": TEMPLATE}
    body = "say: prompt Say the city: {text}\necho: prompt {text}"
    first = tiny_session.compare(body, ROWS, metric="judge", judge_template="grader", namespace=namespace)
    for condition in first.conditions:
        assert all(0.0 <= score <= 1.0 for score in condition.scores)
        by_hand, _ = judged_scores(Judge(TEMPLATE), tiny_session.model, tiny_session.tokenizer,
                                   condition.predictions, condition.references, ROWS, 8)
        assert condition.scores == pytest.approx(by_hand, abs=1e-6)
    notices = [line for line in first.notices() if "the judge agrees with exact match" in line]
    assert len(notices) == 2 and "Cohen's kappa" in notices[0]
    monkeypatch.setattr(judge_module, "grade_probabilities", lambda *a, **k: pytest.fail("judged again"))
    second = tiny_session.compare(body, ROWS, metric="judge", judge_template="grader", namespace=namespace)
    assert [c.scores for c in second.conditions] == [c.scores for c in first.conditions]
    namespace["grader"] = TEMPLATE + " Be strict."  # another judge is another score: not read from the cache
    with pytest.raises(pytest.fail.Exception, match="judged again"):
        tiny_session.compare(body, ROWS, metric="judge", judge_template="grader", namespace=namespace)


def test_judge_options_without_the_judge_metric_are_refused(tiny_session):
    with pytest.raises(FtpeError, match="go with --metric judge"):
        tiny_session.compare("say: prompt Say: {text}", ROWS, metric="exact", judge_template="grader",
                             namespace={"grader": TEMPLATE})


def test_pairwise_counts_a_preference_only_when_both_orders_agree(tiny_session, monkeypatch):
    result = tiny_session.compare("a: prompt Say: {text}\nb: prompt {text}", ROWS, metric="exact")
    result.conditions[0].predictions = ["x1", "x2", "x3", "same"]
    result.conditions[1].predictions = ["y1", "y2", "y3", "same"]
    # rows 0: a wins both ways; 1: b wins both ways; 2: the first position wins both times (position bias)
    asked = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.5, 0.5]])
    swapped = np.array([[0.3, 0.7], [0.6, 0.4], [0.8, 0.2], [0.5, 0.5]])
    monkeypatch.setattr(judge_module, "grade_probabilities",
                        lambda *args, **kwargs: (np.vstack([asked, swapped]), False))
    counts = tiny_session.judge_pairwise(result, "a", "b")
    assert counts == {"a": 1, "b": 1, "same_output": 1, "position_biased": 1, "n": 4}
    with pytest.raises(FtpeError, match="No condition named 'c'"):
        tiny_session.judge_pairwise(result, "a", "c")


def test_pairwise_on_the_model_counts_every_row_once(tiny_session):
    result = tiny_session.compare("a: prompt Say: {text}\nb: prompt City of {text}", ROWS, metric="exact")
    counts = tiny_session.judge_pairwise(result, "a", "b")
    assert counts["a"] + counts["b"] + counts["same_output"] + counts["position_biased"] == counts["n"] == 4


def test_a_fine_tune_does_not_grade_its_own_answers(tiny_session):
    tiny_session.finetune("Text: {text}\nCity: {label}", ROWS, "judged", method="lora", lr=1e-2, max_steps=4,
                          batch_size=2)
    result = tiny_session.compare("t: adapter judged", ROWS, metric="judge", judge_template="grader",
                                  namespace={"grader": TEMPLATE})
    outputs, references = result.conditions[0].predictions, [row["label"] for row in ROWS]
    with tiny_session.using("base"):
        by_base, _ = judged_scores(Judge(TEMPLATE), tiny_session.model, tiny_session.tokenizer, outputs, references,
                                   ROWS, 8)
    with tiny_session.using("judged"):
        by_adapter, _ = judged_scores(Judge(TEMPLATE), tiny_session.model, tiny_session.tokenizer, outputs,
                                      references, ROWS, 8)
    assert result.conditions[0].scores == pytest.approx(by_base, abs=1e-6)
    assert by_adapter != pytest.approx(by_base, abs=1e-6)  # the adapter would have graded otherwise
    assert tiny_session.active_adapter is None  # the comparison leaves the model as it found it
