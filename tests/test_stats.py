"""Significance statistics on hand-checkable inputs, against scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from advviz.errors import AdvvizError
from advviz.analysis.stats import (bootstrap_ci, compare_models, compare_predictions, mcnemar, paired_ttest,
                          per_example_losses)


def test_paired_ttest_matches_scipy_and_hand_value():
    a = [1.0, 2.0, 3.0, 4.0]
    b = [0.5, 1.5, 3.5, 2.0]
    t, p = paired_ttest(a, b)
    ref = stats.ttest_rel(a, b)
    assert t == pytest.approx(ref.statistic) and p == pytest.approx(ref.pvalue)
    d = np.array(a) - np.array(b)  # 0.5, 0.5, -0.5, 2.0: mean 0.625, sd of d over sqrt(n)
    assert t == pytest.approx(d.mean() / (d.std(ddof=1) / math.sqrt(4)))


def test_paired_ttest_identical_and_short():
    assert paired_ttest([1, 2, 3], [1, 2, 3]) == (0.0, 1.0)
    t, p = paired_ttest([1.0], [2.0])
    assert math.isnan(t) and math.isnan(p)
    with pytest.raises(AdvvizError):
        paired_ttest([1, 2], [1, 2, 3])


def test_mcnemar_exact_small_counts():
    # b = 3 (A right, B wrong), c = 1: exact two-sided binomial p = 2 * P(X <= 1 | n=4) = 2 * 5/16
    ca = [1, 1, 1, 0, 1, 0]
    cb = [0, 0, 0, 1, 1, 0]
    r = mcnemar(ca, cb)
    assert (r["b"], r["c"], r["method"]) == (3, 1, "exact")
    assert r["p"] == pytest.approx(10 / 16)


def test_mcnemar_chi2_with_continuity():
    ca = np.array([1] * 30 + [0] * 10 + [1] * 5, dtype=bool)
    cb = np.array([0] * 30 + [1] * 10 + [1] * 5, dtype=bool)
    r = mcnemar(ca, cb)
    assert (r["b"], r["c"], r["method"]) == (30, 10, "chi2-cc")
    assert r["statistic"] == pytest.approx((20 - 1) ** 2 / 40)
    assert r["p"] == pytest.approx(stats.chi2.sf((19 ** 2) / 40, 1))


def test_mcnemar_no_discordant_pairs():
    r = mcnemar([1, 0, 1], [1, 0, 1])
    assert r["p"] == 1.0 and r["b"] == r["c"] == 0


def test_bootstrap_ci_brackets_difference_and_is_seeded():
    rng = np.random.default_rng(0)
    ca = rng.random(200) < 0.8
    cb = rng.random(200) < 0.6
    lo, hi = bootstrap_ci(ca, cb, n_boot=500, seed=1)
    assert lo < ca.mean() - cb.mean() < hi
    assert bootstrap_ci(ca, cb, n_boot=500, seed=1) == [lo, hi]
    assert bootstrap_ci([1, 1], [1, 1]) == [0.0, 0.0]


def test_per_example_losses_hand_value():
    logits = np.array([[0.0, 0.0], [math.log(3), 0.0]], dtype=np.float32)
    losses = per_example_losses(logits, [1, 0])
    assert losses == pytest.approx([math.log(2), math.log(4 / 3)], rel=1e-5)


def test_compare_predictions_fields():
    labels = [0, 1, 1, 0]
    la = np.array([[2, 0], [0, 2], [0, 2], [2, 0]], dtype=np.float32)  # all right
    lb = np.array([[2, 0], [2, 0], [0, 2], [0, 2]], dtype=np.float32)  # two wrong
    r = compare_predictions(la, lb, labels, n_boot=100)
    assert r["accuracy_a"] == 1.0 and r["accuracy_b"] == 0.5 and r["accuracy_diff"] == 0.5
    assert r["mcnemar"]["b"] == 2 and r["mcnemar"]["c"] == 0
    assert r["t"] < 0  # A's losses are lower


class _FakeModel:
    def __init__(self, classifier, labels, name):
        self.classifier, self.label_names, self.name, self.directory = classifier, labels, name, name


def test_compare_models_label_set_mismatch(tiny_lstm):
    a = _FakeModel(tiny_lstm, ["negative", "positive"], "a")
    b = _FakeModel(tiny_lstm, ["World", "Sports", "Business", "Sci/Tech"], "b")
    with pytest.raises(AdvvizError, match="different label sets"):
        compare_models(a, b, ["good"], [1])


def test_compare_models_same_model_is_not_significant(tiny_lstm):
    from conftest import LABELS, SENTENCES

    a = _FakeModel(tiny_lstm, ["negative", "positive"], "a")
    r = compare_models(a, a, SENTENCES, LABELS, n_boot=50)
    assert r["accuracy_a"] == r["accuracy_b"] and r["p"] == 1.0 and r["ci95"] == [0.0, 0.0]
    assert r["mcnemar"]["p"] == 1.0
