"""result.verdict(): every sentence checked against a comparison built with known numbers."""

from __future__ import annotations

import numpy as np

from ftpe_magics.engine.evaluation.comparison import CompareResult
from ftpe_magics.engine.evaluation.evaluator import ConditionResult
from ftpe_magics.engine.evaluation.stats import mcnemar_p
from ftpe_magics.engine.evaluation.verdict import paired_gap_interval

N = 100
REFERENCES = ["yes" if i % 2 else "no" for i in range(N)]


def _condition(name: str, kind: str, right: int, seconds: float, tokens: int, train_seconds: float = 0.0,
               samples=None) -> ConditionResult:
    """Right on the first ``right`` examples, wrong on the rest."""
    predictions = [ref if i < right else ("no" if ref == "yes" else "yes") for i, ref in enumerate(REFERENCES)]
    return ConditionResult(name, kind, f"{name} spec", REFERENCES, predictions, predictions,
                           [float(i < right) for i in range(N)], ["no", "yes"], seconds, [tokens] * N, "",
                           samples=samples, train_seconds=train_seconds)


def _result(*conditions) -> CompareResult:
    return CompareResult(list(conditions), [f"text {i}" for i in range(N)])


def test_each_sentence_carries_the_tables_numbers():
    prompt = _condition("fs4", "fewshot", 60, seconds=10.0, tokens=150)  # 0.60, 100 ms, 150 tokens
    prompt.order_accuracies = [0.58, 0.60, 0.62]
    tuned = _condition("lora", "adapter", 80, seconds=3.0, tokens=80, train_seconds=389.0,
                       samples=[["yes", "yes"]] * N)  # 0.80, 30 ms, 80 tokens
    zero = _condition("zero", "prompt", 50, seconds=5.0, tokens=40)
    written = _result(zero, prompt, tuned).verdict()
    best_prompt, best_tuned, gap, consistency, crossover, resolution, even, recommendation = written.sentences
    low, high = prompt.interval
    assert best_prompt == (f"Best prompt: fs4 (fs4 spec), accuracy 0.600 (95% CI {low:.3f}-{high:.3f}, n=100); chosen "
                           "on --eval (no line of this side has a score on --train).")
    assert best_tuned.startswith("Best fine-tune: lora (lora spec), accuracy 0.800")
    (gap_low, gap_high), method = paired_gap_interval(tuned, prompt)
    assert gap_low <= 0.2 <= gap_high and method == "Newcombe's paired score interval"
    p = mcnemar_p(tuned.correct, prompt.correct)  # 20 discordant pairs, all one way: 2 * 0.5**20
    assert abs(p - 2 * 0.5**20) < 1e-12
    assert f"is +0.200 (95% CI {gap_low:+.3f} to {gap_high:+.3f}" in gap and f"p = {p:.3g} (significant" in gap
    assert "fs4: accuracy spread across demonstration orders 0.016" in consistency
    assert "lora: agreement across samples" in consistency
    assert crossover.startswith("Crossover: not measured")
    assert resolution.startswith("Resolution: on these 100 examples (they disagree on 20% of them), a gap of")
    assert written.numbers["eval_needed"] is None and 0 < written.numbers["detectable_gap"] <= 0.2
    # 150 - 80 = 70 tokens, 100 - 30 = 70 ms saved per query; 389 s / 0.070 s = 5,557 queries
    assert "lora reads 70 fewer prompt tokens per query and answers 70.0 ms faster" in even
    assert "its 389 s of training is paid back after 5,557 queries" in even
    assert abs(written.numbers["break_even_queries"] - 389 / 0.07) < 1e-6
    assert recommendation.startswith("Recommendation: lora (the fine-tune), significantly more accurate than fs4 by "
                                     "20.0 points")


def test_no_significant_difference_is_said():
    prompt = _condition("zero", "prompt", 60, seconds=2.0, tokens=30)
    tuned = _condition("lora", "adapter", 62, seconds=2.0, tokens=30, train_seconds=50.0)
    written = _result(prompt, tuned).verdict()
    assert "not significant at 0.05" in written.sentences[2]
    assert written.sentences[-1].startswith("Recommendation: no significant difference (p = 0.5 >= 0.05)")
    assert written.sentences[-2].startswith("Break-even: never on this machine")
    assert written.numbers["break_even_queries"] is None


def test_a_prompt_that_wins_and_a_missing_side():
    prompt = _condition("fs", "fewshot", 90, seconds=1.0, tokens=100)
    tuned = _condition("lora", "adapter", 50, seconds=1.0, tokens=20, train_seconds=10.0)
    assert _result(prompt, tuned).verdict().sentences[-1].startswith("Recommendation: fs (the prompt)")
    alone = _result(prompt).verdict()
    assert alone.numbers == {} and "no fine-tune (adapter NAME" in str(alone)


def test_the_panel_is_under_the_table():
    from ftpe_magics.display.html import summary_html

    prompt = _condition("zero", "prompt", 60, seconds=2.0, tokens=30)
    tuned = _condition("lora", "adapter", 80, seconds=1.0, tokens=10, train_seconds=5.0)
    assert "<h4>Verdict</h4>" in summary_html(_result(prompt, tuned))
    assert "Verdict" not in summary_html(_result(prompt))


def test_cost_columns_are_counted_from_the_model_and_the_training(tiny_session):
    rows = [{"text": t, "label": label} for t, label in [("great fun", "positive"), ("so dull", "negative"),
                                                          ("loved it", "positive"), ("awful film", "negative")] * 3]
    adapter = tiny_session.finetune("Review: {text}\nSentiment: {label}", rows, "costed", max_steps=2, batch_size=4)
    assert adapter.train_tokens > 0
    result = tiny_session.compare("zero: prompt Review: {text}\\nSentiment:\ntuned: adapter costed", rows)
    table = result.to_pandas().set_index("condition")
    params = tiny_session.parameter_count()
    assert table.loc["zero", "flops_per_query"] == 2 * params * table.loc["zero", "prompt_tokens"]
    assert table.loc["tuned", "train_flops"] == 6 * params * adapter.train_tokens
    assert table.loc["zero", "train_flops"] is None or table["train_flops"].isna()["zero"]
    assert "Break-even" in str(result.verdict())


def test_accuracy_intervals_are_the_exact_binomial_bounds_at_the_extremes():
    from ftpe_magics.engine.evaluation.stats import accuracy_interval

    alpha = 0.05
    low, high = accuracy_interval([1.0] * 20)  # 20/20: Clopper-Pearson lower bound (alpha/2)**(1/n)
    assert abs(low - (alpha / 2) ** (1 / 20)) < 1e-9 and high == 1.0 and low < 0.84
    low, high = accuracy_interval([0.0] * 20)
    assert low == 0.0 and abs(high - (1 - (alpha / 2) ** (1 / 20))) < 1e-9
    low, high = accuracy_interval([1.0] * 19 + [0.0])
    assert abs(low - 0.75127) < 1e-4 and abs(high - 0.99873) < 1e-4  # the tabulated exact interval of 19/20
    low, high = accuracy_interval([1.0])
    assert abs(low - 0.025) < 1e-12 and high == 1.0
    low, high = accuracy_interval([0.5, 0.7, 0.9])  # mean metric scores: a bootstrap interval
    assert 0.5 <= low < high <= 0.9


def test_the_paired_gap_interval_keeps_its_width_and_covers_the_truth():
    from ftpe_magics.engine.evaluation.stats import paired_difference_interval

    low, high = paired_difference_interval([True] * 20, [True] * 20)  # both perfect: the gap is not pinned at 0
    assert low < -0.1 and high > 0.1 and abs(low + high) < 1e-12
    rng = np.random.default_rng(0)
    covered = 0
    for _ in range(400):  # true accuracies 0.8 and 0.7 with correlated outcomes on 40 paired examples
        shared = rng.random(40)
        first, second = shared < 0.8, (shared + rng.normal(0, 0.3, 40)) % 1 < 0.7
        low, high = paired_difference_interval(first, second)
        covered += low <= 0.1 <= high
    assert covered / 400 >= 0.9


def test_what_would_decide_it():
    from ftpe_magics.engine.evaluation.stats import detectable_gap, mcnemar_sample_size

    needed = mcnemar_sample_size(0.2, 0.1)  # Connor 1987 with z 1.960 and 0.842
    assert abs(needed - (1.959964 * 0.2 ** 0.5 + 0.841621 * 0.19 ** 0.5) ** 2 / 0.01) < 0.01
    assert abs(detectable_gap(int(np.ceil(needed)), 0.2) - 0.1) < 0.002
    assert detectable_gap(100, 0.0) is None and mcnemar_sample_size(0.2, 0.0) == float("inf")
    prompt = _condition("zero", "prompt", 60, seconds=2.0, tokens=30)
    tuned = _condition("lora", "adapter", 62, seconds=2.0, tokens=30, train_seconds=50.0)
    written = _result(prompt, tuned).verdict()  # 2 points apart on 100 (2 disagreements): not significant
    assert written.numbers["detectable_gap"] is None  # even a gap as large as their disagreement would not show
    assert written.numbers["eval_needed"] == int(np.ceil(mcnemar_sample_size(0.02, 0.02))) > 300
    assert f"would need about {written.numbers['eval_needed']:,} eval examples" in written.sentences[5]


def test_each_side_is_chosen_on_train_among_the_lines_with_a_score_there():
    luckier = _condition("lucky", "prompt", 66, seconds=2.0, tokens=30)  # best on --eval
    steadier = _condition("steady", "prompt", 62, seconds=2.0, tokens=30)  # best on --train
    luckier.extra["selection"] = {"accuracy": 0.55, "how": "scored on --train"}
    steadier.extra["selection"] = {"accuracy": 0.70, "how": "scored on --train"}
    tuned = _condition("lora", "adapter", 80, seconds=2.0, tokens=30, train_seconds=10.0)
    written = _result(luckier, steadier, tuned).verdict()
    assert written.numbers["prompt"] == "steady" and written.numbers["chosen_on_train"]["prompt"]
    assert "chosen before --eval was read: 0.700 by scored on --train" in written.sentences[0]
    del steadier.extra["selection"]  # a line without a score on --train is not a candidate, and the verdict says so
    written = _result(luckier, steadier, tuned).verdict()
    assert written.numbers["prompt"] == "lucky" and written.numbers["chosen_on_train"]["prompt"]
    assert "not candidates: steady (no score on --train" in written.sentences[0]
    del luckier.extra["selection"]  # no line with one: the eval decides, and says so
    written = _result(luckier, steadier, tuned).verdict()
    assert written.numbers["prompt"] == "lucky" and not written.numbers["chosen_on_train"]["prompt"]
    assert "chosen on --eval (no line of this side has a score on --train)" in written.sentences[0]


def test_a_generation_task_counts_the_tokens_each_answer_writes():
    prompt = _condition("fs4", "fewshot", 60, seconds=10.0, tokens=150)
    tuned = _condition("lora", "adapter", 80, seconds=3.0, tokens=80, train_seconds=389.0)
    prompt.extra["tokens_generated"], tuned.extra["tokens_generated"] = [20.0] * N, [12.0] * N
    result = CompareResult([prompt, tuned], [f"text {i}" for i in range(N)], model_params=1000)
    even = result.verdict().sentences[-2]
    assert "lora reads 70 fewer prompt tokens per query and writes 8.0 fewer tokens per answer (12.0 against " \
           "20.0)" in even
    rows = result.to_pandas().set_index("condition")
    assert rows.loc["lora", "tokens_generated"] == 12.0
    assert rows.loc["lora", "flops_per_query"] == 2.0 * 1000 * (80 + 12)  # the answer's tokens are a cost too
    assert "tokens_generated" in str(result)
    plain = _result(_condition("zero", "prompt", 50, seconds=1.0, tokens=40))
    assert "tokens_generated" not in str(plain)  # a label task generates nothing
