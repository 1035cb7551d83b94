import pytest

from ftpe_magics import FtpeError
from ftpe_magics.engine.evaluation.metrics import contains, exact_match, regex_match, resolve_metric, token_f1
from ftpe_magics.engine.evaluation.stats import (
    bootstrap_interval,
    macro_f1,
    mcnemar_p,
    modal_agreement,
    per_label_scores,
)


def test_mcnemar_exact_values():
    # 5 discordant pairs all favouring A: two-sided exact p = 2 * 0.5**5
    assert mcnemar_p([1, 1, 1, 1, 1, 0], [0, 0, 0, 0, 0, 0]) == pytest.approx(0.0625)
    assert mcnemar_p([1, 0, 1], [1, 0, 1]) == 1.0
    # b=1, c=3: p = 2 * (1 + 4) / 16
    assert mcnemar_p([1, 0, 0, 0], [0, 1, 1, 1]) == pytest.approx(0.625)


def test_bootstrap_interval_brackets_the_mean_and_shrinks_with_n():
    small = bootstrap_interval([1, 0] * 10)
    large = bootstrap_interval([1, 0] * 500)
    assert small[0] < 0.5 < small[1] and large[0] < 0.5 < large[1]
    assert (large[1] - large[0]) < (small[1] - small[0]) / 3
    assert bootstrap_interval([1] * 20) == (1.0, 1.0)


def test_per_label_scores_and_macro_f1():
    predictions = ["a", "a", "b", "b"]
    references = ["a", "b", "b", "b"]
    scores = per_label_scores(predictions, references, ["a", "b"])
    assert scores["a"]["precision"] == 0.5 and scores["a"]["recall"] == 1.0
    assert scores["b"]["precision"] == 1.0 and scores["b"]["recall"] == pytest.approx(2 / 3)
    assert macro_f1(predictions, references, ["a", "b"]) == pytest.approx((2 / 3 + 0.8) / 2)


def test_modal_agreement():
    assert modal_agreement([["x", "x", "y", "x"], ["z", "z", "z", "z"]]) == pytest.approx((0.75 + 1) / 2)


def test_generation_metrics():
    assert exact_match(" Paris. ", "paris") == 1.0 and exact_match("Paris, France", "Paris") == 0.0
    assert contains("It is Paris, France", "paris") == 1.0
    assert regex_match("order 12345 shipped", r"\b\d{5}\b") == 1.0
    assert token_f1("the cat sat", "the cat") == pytest.approx(0.8)


def test_resolve_metric_by_name_function_or_error():
    def my_metric(prediction, reference):
        return float(prediction == reference)

    assert resolve_metric("f1")[1] is token_f1
    assert resolve_metric("my_metric", {"my_metric": my_metric})[1] is my_metric
    with pytest.raises(FtpeError, match="Unknown metric 'nope'"):
        resolve_metric("nope", {})


def test_the_paired_test_is_mcnemar_on_right_or_wrong_and_a_permutation_test_on_scores():
    from scipy.stats import permutation_test

    from ftpe_magics.engine.evaluation.stats import mcnemar_p, paired_test, permutation_p

    right = [1, 1, 0, 1, 0, 1, 1, 1, 0, 1]
    other = [0, 1, 0, 0, 0, 1, 0, 1, 0, 0]
    assert paired_test(right, other) == (mcnemar_p([s == 1 for s in right], [s == 1 for s in other]),
                                         "exact McNemar test")
    f1_a = [0.9, 0.8, 0.75, 1.0, 0.5, 0.66, 0.9, 0.4, 0.8, 0.7, 0.95, 0.6]
    f1_b = [0.7, 0.8, 0.5, 0.9, 0.6, 0.5, 0.7, 0.4, 0.6, 0.6, 0.9, 0.3]
    p, name = paired_test(f1_a, f1_b)
    exact = permutation_test((f1_a, f1_b), lambda a, b: (a - b).mean(), permutation_type="samples",
                             n_resamples=float("inf"), alternative="two-sided").pvalue
    assert name == "paired permutation test" and p == pytest.approx(exact)
    many_a = [0.5 + 0.02 * (i % 7) for i in range(40)]
    many_b = [0.5 + 0.015 * (i % 5) for i in range(40)]
    sampled = permutation_test((many_a, many_b), lambda a, b: (a - b).mean(), permutation_type="samples",
                               n_resamples=50_000, alternative="two-sided", random_state=1).pvalue
    assert permutation_p(many_a, many_b) == pytest.approx(sampled, abs=0.01)  # 40 differences: sampled patterns
    assert permutation_p(f1_a, f1_a) == 1.0
