"""%%fewshot --search: candidates scored on a validation split, the eval set never read while searching."""

from __future__ import annotations

import pytest
from fewshot_data import EVAL, POOL, TEMPLATE

from ftpe_magics import FtpeError
from ftpe_magics.engine.data.examples import load_examples
from ftpe_magics.engine.evaluation.evaluator import Evaluator
from ftpe_magics.engine.evaluation.prompt_search import search_split


def test_the_leakage_guard_removes_eval_texts_before_the_split():
    planted = POOL + [EVAL[0], {"text": "  I LOVED it ", "label": "positive"}]  # exact and normalised duplicates
    pool, val, leaked = search_split(load_examples(planted), load_examples(EVAL), 0.25, seed=0)
    assert leaked == 2
    eval_texts = {row["text"] for row in EVAL}
    assert not eval_texts & set(pool.texts) and not eval_texts & set(val.texts)
    assert len(pool) + len(val) == len(POOL) and not set(pool.texts) & set(val.texts)
    assert len(val) == 10


def test_search_reads_only_the_validation_split_and_keeps_the_best(tiny_session, monkeypatch):
    scored_on = []
    original = Evaluator.fewshot

    def recording(self, condition, config, k=None):
        scored_on.append(set(self.eval_data.texts))
        return original(self, condition, config, k)

    monkeypatch.setattr(Evaluator, "fewshot", recording)
    result = tiny_session.fewshot(TEMPLATE, POOL + [EVAL[1]], EVAL, search=5, search_k="1,2,4",
                                  instructions=["Classify the review.", "Is the review positive?"],
                                  verbalizers=[{"positive": "great", "negative": "awful"}])
    eval_texts = {row["text"] for row in EVAL}
    # five candidates on the validation split (a worded one calls itself once more), then the kept one on --eval
    first_eval = next(index for index, texts in enumerate(scored_on) if texts & eval_texts)
    assert first_eval >= 5 and all(not texts & eval_texts for texts in scored_on[:first_eval])
    assert all(texts == eval_texts for texts in scored_on[first_eval:]) and len(scored_on) - first_eval <= 2
    log = result.search_log
    assert [row["candidate"] for row in log] == list(range(5)) and sum(row["best"] for row in log) == 1
    best = next(row for row in log if row["best"])
    assert best["val_accuracy"] == max(row["val_accuracy"] for row in log)
    assert log[0]["k"] == 4 and log[0]["select"] == "random" and log[0]["instruction"] == "(none)"  # the options'
    assert f"(k={best['k']}, {best['select']}" in result.conditions[0].spec


def test_label_words_score_words_and_predict_labels(tiny_session):
    plain = tiny_session.fewshot(TEMPLATE, POOL, EVAL, k=2, select="balanced")
    same = tiny_session.evaluator(load_examples(EVAL), tiny_session_options()).fewshot(
        "same", _config(verbalizer={"positive": "positive", "negative": "negative"}))
    assert same.predictions == plain.conditions[0].predictions  # identity words: the very same scores
    worded = tiny_session.evaluator(load_examples(EVAL), tiny_session_options()).fewshot(
        "worded", _config(verbalizer={"positive": "great", "negative": "awful"}))
    assert set(worded.predictions) <= {"positive", "negative"} and worded.references == plain.conditions[0].references
    assert "great" in worded.example_prompt and "words great/awful" in worded.spec


def tiny_session_options():
    from ftpe_magics.engine.options import EvalOptions

    return EvalOptions()


def _config(**changes):
    from ftpe_magics.engine.prompting.fewshot import FewShotConfig
    from ftpe_magics.engine.prompting.templates import ExampleTemplate

    return FewShotConfig("c", ExampleTemplate.from_body(TEMPLATE), load_examples(POOL), k=2, select="balanced",
                         **changes)


@pytest.mark.parametrize("options, message", [
    ({"search": 3, "verbalizers": [{"positive": "great"}]}, "gives no word for label 'negative'"),
    ({"search": 3, "verbalizers": [{"positive": "x", "negative": "x"}]}, "the words must differ"),
    ({"instructions": ["Be brief."]}, "add --search"),
    ({"search": 3, "sweep_k": "1,2"}, "use one of them"),
    ({"search": 3, "instructions": "nosuch"}, "no variable named 'nosuch'"),
    ({"search": 3, "val_split": 0.01, "cv": 1}, "the search needs both"),
])
def test_bad_search_options_are_one_line(tiny_session, options, message):
    with pytest.raises(FtpeError, match=message):
        tiny_session.fewshot(TEMPLATE, POOL, EVAL, namespace={}, **options)


def test_the_magic_shows_the_search_log(shell, capsys):
    from IPython.utils.capture import capture_output

    shell.user_ns.update(pool=POOL, evalset=EVAL, variants=["Classify the review."],
                         words=[{"positive": "great", "negative": "awful"}])
    with capture_output() as captured:
        shell.run_cell_magic("fewshot", "--train pool --eval evalset --search 3 --search-k 1,2 --instructions variants "
                             "--verbalizers words --out found", TEMPLATE)
    html = "".join(output.data.get("text/html", "") for output in captured.outputs)
    assert "Search log (3 candidates on the validation split" in html
    assert len(shell.user_ns["found"].search_log) == 3


def test_the_search_log_is_kept_in_the_run_store(tiny_model_dir, tmp_path):
    from ftpe_magics import Session

    session = Session(log=lambda message: None)
    session.config.cache_dir, session.config.store = str(tmp_path / "cache"), str(tmp_path / "runs.sqlite")
    session.load(str(tiny_model_dir))
    result = session.fewshot(TEMPLATE, POOL, EVAL, search=3, search_k="1,2", name="searched")
    again = Session(log=lambda message: None)  # another kernel
    again.config.cache_dir, again.config.store = session.config.cache_dir, session.config.store
    run_id = int(again.history_table(kind="fewshot").iloc[0]["id"])
    view, rebuilt = again.stored_run(run_id)
    assert view == "fewshot" and rebuilt.search_log == result.search_log


def test_the_search_can_choose_no_demonstrations_and_tries_calibration_both_ways():
    from ftpe_magics.engine.evaluation.prompt_search import Candidate, draw_candidates

    first = Candidate(4, "balanced", 0, calibrate=True)
    candidates = draw_candidates(8, first, [0, 1, 2, 4, 8], 0, 0, 40, seed=0)
    assert candidates[0] == first and candidates[1] == Candidate(0, "balanced", 0, calibrate=False)
    assert len(set(candidates)) == 8 and {c.calibrate for c in candidates[2:]} == {True, False}
    assert Candidate(0, "balanced", 0) not in draw_candidates(8, first, [1, 2], 0, 0, 40, seed=0)  # 0 not listed


def test_cross_validation_scores_every_pool_example_once_and_never_reads_the_eval_set(tiny_session, monkeypatch):
    from ftpe_magics.engine.evaluation.evaluator import Evaluator

    original, seen = Evaluator.fewshot, []

    def recording(self, condition, config, k=None):
        seen.append((condition, tuple(self.eval_data.texts), tuple(config.train.texts)))
        return original(self, condition, config, k)

    monkeypatch.setattr(Evaluator, "fewshot", recording)
    result = tiny_session.fewshot(TEMPLATE, POOL[:20], EVAL, search=3, search_k="0,1,2", cv=4, no_cache=True)
    searched = [entry for entry in seen if entry[0].startswith("candidate")]
    assert len(searched) == 3 * 4  # every candidate on each of the 4 folds
    for number in range(3):
        folds = [entry for entry in searched if entry[0] == f"candidate {number}"]
        held = [text for _, val, _ in folds for text in val]
        assert sorted(held) == sorted(row["text"] for row in POOL[:20])  # every pool example held out once
        assert all(not set(val) & set(train) for _, val, train in folds)  # never its own demonstration
    eval_texts = {row["text"] for row in EVAL}
    assert not any(set(val) & eval_texts for _, val, _ in searched)  # the eval set is not read while searching
    assert all(row["val_spread"] == row["val_spread"] for row in result.search_log)  # a spread across folds
    assert seen[-1][0] != "candidate 0" and set(seen[-1][1]) == eval_texts  # then only the chosen one on --eval
