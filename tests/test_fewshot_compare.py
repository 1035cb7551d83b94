import pandas as pd
import pytest
from IPython.core.error import UsageError

from ftpe_magics import FtpeError, get_session
from ftpe_magics.display.html import compare_html
from ftpe_magics.engine.data.examples import load_examples
from ftpe_magics.engine.data.splits import overlapping
from ftpe_magics.engine.evaluation.condition_kinds import parse_conditions
from ftpe_magics.engine.prompting.fewshot import FewShotConfig, select_demos
from ftpe_magics.engine.prompting.templates import ExampleTemplate

TRAIN = pd.read_csv("examples/data/reviews_train.csv")
EVAL = pd.read_csv("examples/data/reviews_eval.csv")


def test_template_splits_instructions_and_label_position():
    template = ExampleTemplate.from_body("Classify the review.\n\nReview: {text}\nSentiment: {label}")
    assert template.instructions == "Classify the review."
    assert template.query({"text": "ok"}) == "Review: ok\nSentiment:"
    assert template.continuation("positive") == " positive"
    assert template.demo({"text": "ok"}, "positive") == "Review: ok\nSentiment: positive"
    bare = ExampleTemplate("Review: {text}\nSentiment:")
    assert bare.continuation("negative") == " negative" and bare.demo({"text": "x"}, "negative").endswith(": negative")
    with pytest.raises(FtpeError, match="must be the last"):
        ExampleTemplate("{label} is the answer for {text}").split()


def test_leakage_guard_finds_normalised_duplicates():
    train = load_examples([{"text": "Great  film!", "label": "p"}, {"text": "bad", "label": "n"}])
    eval_data = load_examples([{"text": "great film", "label": "p"}, {"text": "new", "label": "n"}])
    assert overlapping(train, eval_data) == ([0], {0})


def test_balanced_selection_covers_every_label_and_seed_matters():
    train = load_examples(TRAIN)
    eval_data = load_examples(EVAL)
    config = FewShotConfig("b", ExampleTemplate("Review: {text}\nSentiment: {label}"), train, k=4, select="balanced")
    demos = select_demos(config, eval_data, list(range(len(train))), 4)
    labels = [train.labels[i] for i in demos[0]]
    assert sorted(labels) == ["negative", "negative", "positive", "positive"]
    assert all(row == demos[0] for row in demos)
    other = FewShotConfig("b", config.template, train, k=4, select="balanced", seed=1)
    assert select_demos(other, eval_data, list(range(len(train))), 4)[0] != demos[0]


def test_similar_selection_picks_nearest_per_query(tiny_session):
    train = load_examples([{"text": t, "label": "x"} for t in ["alpha beta", "gamma delta", "alpha beta gamma"]])
    eval_data = load_examples([{"text": "alpha beta", "label": "x"}, {"text": "gamma delta", "label": "x"}])
    config = FewShotConfig("s", ExampleTemplate("{text} {label}"), train, k=1, select="similar", allow_overlap=True)
    from ftpe_magics.engine.inference.scoring import mean_pooled_embeddings

    demos = select_demos(config, eval_data, [0, 1, 2], 1,
                         embed=lambda texts: mean_pooled_embeddings(tiny_session.model, tiny_session.tokenizer, texts))
    assert demos == [[0], [1]]


def test_fewshot_excludes_overlap_and_reports_it(tiny_session):
    train = pd.concat([TRAIN, EVAL.head(3)])
    result = tiny_session.fewshot("Review: {text}\nSentiment: {label}", train, EVAL, k=40, select="random", seed=0)
    condition = result.conditions[0]
    assert condition.extra["overlap"] == 3
    assert all(text not in condition.example_prompt for text in EVAL.head(3)["text"] if text != EVAL["text"][0])
    allowed = tiny_session.fewshot("Review: {text}\nSentiment: {label}", train, EVAL, k=43, allow_overlap=True)
    assert EVAL["text"][2] in allowed.conditions[0].example_prompt


def test_fewshot_sweep_orders_and_session_config(tiny_session):
    result = tiny_session.fewshot("Review: {text}\nSentiment: {label}", TRAIN, EVAL, sweep_k=[0, 2], name="sw")
    table = result.to_pandas()
    assert list(table["condition"]) == ["sw k=0", "sw k=2"] and list(table["n"]) == [20, 20]
    assert table["prompt_tokens"][1] > table["prompt_tokens"][0]
    ordered = tiny_session.fewshot("Review: {text}\nSentiment: {label}", TRAIN, EVAL, k=4, orders=3, name="ord")
    assert len(ordered.conditions[0].order_accuracies) == 3 and "order_spread" in ordered.to_pandas()
    assert "ord" in tiny_session.fewshot_configs and "sw" in tiny_session.fewshot_configs


def test_parse_conditions_and_errors():
    specs = parse_conditions("# comment\nzero: prompt Review: {text}\\nSentiment:\n\nfs: fewshot fs4\n")
    assert [(s.label, s.kind) for s in specs] == [("zero", "prompt"), ("fs", "fewshot")]
    assert specs[0].spec == "Review: {text}\nSentiment:"
    with pytest.raises(FtpeError, match="unknown kind 'promt'.*'prompt'"):
        parse_conditions("a: promt x")
    with pytest.raises(FtpeError, match="used twice"):
        parse_conditions("a: prompt x\na: prompt y")
    with pytest.raises(FtpeError, match="not 'LABEL: KIND SPEC'"):
        parse_conditions("just text")
    with pytest.raises(FtpeError, match="no conditions"):
        parse_conditions("\n# only a comment\n")


def test_compare_result_columns_and_examples(tiny_session):
    tiny_session.fewshot("Review: {text}\nSentiment: {label}", TRAIN, EVAL, k=2, name="fs2")
    result = tiny_session.compare("zero: prompt Review: {text}\\nSentiment:\nfs: fewshot fs2\n"
                                  "cot: cot Review: {text}\\nThink, then answer positive or negative.", EVAL,
                                  samples=3, max_new_tokens=6)
    table = result.to_pandas()
    for column in ("condition", "accuracy", "accuracy_low", "accuracy_high", "n", "macro_f1", "consistency",
                   "latency_ms", "prompt_tokens", "trainable_params", "train_seconds", "p_vs_best"):
        assert column in table
    assert list(table["condition"]) == ["zero", "fs", "cot"]
    assert (table["accuracy_low"] <= table["accuracy"]).all() and (table["accuracy"] <= table["accuracy_high"]).all()
    assert table["consistency"].notna().all()
    examples = result.examples()
    assert len(examples) == 20 and {"zero", "fs", "cot", "zero_correct"} <= set(examples.columns)
    html = compare_html(result)
    assert "Summary" in html and "Disagreements" in html and "data:image/png;base64" in html


def test_generation_metric_with_user_function(tiny_session):
    rows = [{"text": "city: Paris", "label": "Paris"}, {"text": "city: Rome", "label": "Rome"}]

    def always_half(prediction, reference):
        return 0.5

    result = tiny_session.compare("gen: prompt Extract the city: {text}", rows, metric="always_half",
                                  namespace={"always_half": always_half}, max_new_tokens=4)
    assert result.conditions[0].accuracy == 0.5 and result.conditions[0].label_set is None


def test_magics_fewshot_and_compare(shell, capsys):
    shell.user_ns.update(train=TRAIN, held_out=EVAL)
    ok = shell.run_cell("%%fewshot --train train --eval held_out --k 2 --select balanced --name fsm --out fs_result\n"
                        "Review: {text}\nSentiment: {label}")
    assert ok.success
    out = capsys.readouterr().out
    assert "fsm" in out
    assert shell.user_ns["fs_result"].to_pandas()["n"][0] == 20
    ok = shell.run_cell("%%compare --eval held_out --out cmp\nzero: prompt Review: {text}\\nSentiment:\n"
                        "fs: fewshot fsm")
    assert ok.success and list(shell.user_ns["cmp"].to_pandas()["condition"]) == ["zero", "fs"]
    bad = shell.run_cell("%%compare --eval held_out\nfs: fewshot nosuch")
    assert isinstance(bad.error_in_exec, UsageError) and "no few-shot configuration named 'nosuch'" in str(
        bad.error_in_exec)
    missing = shell.run_cell("%%compare --eval held_out --input-col review\nzero: prompt {review}")
    assert "no column 'review'" in str(missing.error_in_exec)
    assert get_session().loaded


def test_fewshot_generation_task_has_free_text_references(tiny_session):
    train = [{"text": f"go to {city}", "label": city} for city in ("Oslo", "Rome", "Lima", "Kyiv")]
    held_out = [{"text": "fly to Paris", "label": "Paris"}, {"text": "visit Quito", "label": "Quito"}]
    result = tiny_session.fewshot("Text: {text}\nCity: {label}", train, held_out, k=2, metric="contains",
                                  max_new_tokens=3)
    condition = result.conditions[0]
    assert condition.label_set is None and condition.n == 2
    assert sum(f"City: {city}" in condition.example_prompt for city in ("Oslo", "Rome", "Lima", "Kyiv")) == 2


def test_compare_checks_every_reference_before_running_anything(tiny_session, monkeypatch):
    ran = []
    monkeypatch.setattr("ftpe_magics.engine.evaluation.evaluator.Evaluator.prompt", lambda self, *a, **k: ran.append(a))
    with pytest.raises(FtpeError, match="no few-shot configuration named 'missing'"):
        tiny_session.compare("zero: prompt Review: {text}\\nSentiment:\nfs: fewshot missing", EVAL)
    with pytest.raises(FtpeError, match="No adapter named 'gone'"):
        tiny_session.compare("zero: prompt Review: {text}\\nSentiment:\nft: adapter gone", EVAL)
    assert ran == []


def test_similar_selection_embeds_the_pool_once(tiny_session, monkeypatch):
    import ftpe_magics.engine.evaluation.evaluator as evaluation

    embedded = []
    real = evaluation.mean_pooled_embeddings
    monkeypatch.setattr(evaluation, "mean_pooled_embeddings",
                        lambda model, tok, texts, batch: embedded.append(len(texts)) or real(model, tok, texts, batch))
    tiny_session.fewshot("Review: {text}\nSentiment: {label}", TRAIN, EVAL, k=2, select="similar", name="sim2")
    first = sum(embedded)
    assert first == len(set(TRAIN["text"]) | set(EVAL["text"]))
    tiny_session.compare("s: fewshot sim2", EVAL)
    assert sum(embedded) == first, "a second run of the configuration re-embedded texts"
