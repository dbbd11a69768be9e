"""Significance of a difference between two classifiers on the same examples
(Bělohlávek et al. 2018, §5.2: paired t-test on per-example losses; McNemar on correctness).

- :func:`paired_ttest`: ``scipy.stats.ttest_rel`` on per-example losses (a minus b).
- :func:`mcnemar`: b = #(A right, B wrong), c = #(A wrong, B right); exact two-sided binomial
  test (``scipy.stats.binomtest(b, b+c, 0.5)``) when b + c < 25, otherwise the chi-square
  statistic with continuity correction (|b − c| − 1)² / (b + c) on 1 degree of freedom.
- :func:`bootstrap_ci`: percentile bootstrap (``scipy.stats.bootstrap``, paired by resampling
  examples) of accuracy(A) − accuracy(B).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats

from ..errors import AdvvizError
from ..evaluate import predict_logits
from ..limits import check_count

EXACT_BELOW = 25  # b + c below this: exact binomial McNemar
BOOTSTRAP_VALUES = 10_000_000  # resampled values held at once by bootstrap_ci


def paired_ttest(a, b) -> tuple[float, float]:
    """(t, two-sided p) of the paired t-test on a − b (``scipy.stats.ttest_rel``). Identical inputs
    give (0, 1); fewer than 2 pairs give (nan, nan)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise AdvvizError(f"paired t-test needs equal-length samples, got {a.shape} and {b.shape}")
    if len(a) < 2:
        return float("nan"), float("nan")
    if np.all(a == b):
        return 0.0, 1.0
    res = stats.ttest_rel(a, b)
    return float(res.statistic), float(res.pvalue)


def mcnemar(correct_a, correct_b, exact: bool | None = None) -> dict:
    """McNemar's test on paired correctness (bool arrays). ``exact`` None: exact when b + c < 25."""
    ca, cb = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if ca.shape != cb.shape:
        raise AdvvizError("McNemar's test needs the same examples for both models")
    b = int(np.sum(ca & ~cb))
    c = int(np.sum(~ca & cb))
    n = b + c
    if exact is None:
        exact = n < EXACT_BELOW
    if n == 0:
        return {"statistic": 0.0, "p": 1.0, "b": b, "c": c, "method": "exact" if exact else "chi2-cc"}
    if exact:
        p = stats.binomtest(b, n, 0.5, alternative="two-sided").pvalue
        return {"statistic": float(min(b, c)), "p": float(min(1.0, p)), "b": b, "c": c, "method": "exact"}
    stat = (abs(b - c) - 1) ** 2 / n
    return {"statistic": float(stat), "p": float(stats.chi2.sf(stat, 1)), "b": b, "c": c, "method": "chi2-cc"}


def check_n_boot(n_boot: int) -> None:
    """--n-boot: at least 10 resamples, at most its documented maximum (limits.MAXIMA)."""
    if n_boot < 10:
        raise AdvvizError(f"--n-boot must be at least 10, got {n_boot}")
    check_count("n_boot", n_boot, "--n-boot")


def bootstrap_ci(correct_a, correct_b, n_boot: int = 1000, seed: int = 0, confidence: float = 0.95) -> list[float]:
    """Percentile bootstrap CI of mean(correct_a) − mean(correct_b), resampling examples (paired)."""
    check_n_boot(n_boot)
    d = np.asarray(correct_a, dtype=np.float64) - np.asarray(correct_b, dtype=np.float64)
    if len(d) == 0:
        raise AdvvizError("no examples to bootstrap")
    if np.all(d == d[0]):  # every resample has the same mean: a zero-width interval
        return [float(d[0]), float(d[0])]
    # resamples drawn in batches of at most ~10⁷ values (80 MB): the same draws and interval as
    # one batch, without n_boot × n floats in memory at once
    res = stats.bootstrap((d,), np.mean, n_resamples=n_boot, confidence_level=confidence, method="percentile",
                          rng=np.random.default_rng(seed), batch=max(1, BOOTSTRAP_VALUES // len(d)))
    return [float(res.confidence_interval.low), float(res.confidence_interval.high)]


def per_example_losses(logits: np.ndarray, labels) -> np.ndarray:
    """<float64>[N] cross-entropy of each example."""
    return F.cross_entropy(torch.from_numpy(np.asarray(logits, dtype=np.float32)),
                           torch.as_tensor(np.asarray(labels, dtype=np.int64)), reduction="none").double().numpy()


def compare_predictions(logits_a: np.ndarray, logits_b: np.ndarray, labels, n_boot: int = 1000,
                        seed: int = 0) -> dict:
    """All statistics from two models' logits on the same labelled examples."""
    labels = np.asarray(labels, dtype=np.int64)
    ca, cb = logits_a.argmax(-1) == labels, logits_b.argmax(-1) == labels
    la, lb = per_example_losses(logits_a, labels), per_example_losses(logits_b, labels)
    t, p = paired_ttest(la, lb)
    if math.isnan(t) or math.isnan(p):  # fewer than 2 pairs: JSON gets null and the reason, never NaN
        t, p, t_test = None, None, "undefined for fewer than 2 examples (t and p are null)"
    else:
        t_test = "scipy.stats.ttest_rel on per-example losses (A − B)"
    return {"n": int(len(labels)), "accuracy_a": float(ca.mean()), "accuracy_b": float(cb.mean()),
            "accuracy_diff": float(ca.mean() - cb.mean()), "loss_a": float(la.mean()), "loss_b": float(lb.mean()),
            "t": t, "p": p, "t_test": t_test, "mcnemar": mcnemar(ca, cb), "ci95": bootstrap_ci(ca, cb, n_boot, seed),
            "n_boot": n_boot}


def check_same_labels(model_a, model_b) -> None:
    la, lb = list(model_a.label_names), list(model_b.label_names)
    if la != lb:
        raise AdvvizError(f"{model_a.name} and {model_b.name} were trained on different label sets "
                          f"({la} vs {lb}); they cannot be compared on the same examples")


def compare_models(model_a, model_b, texts, labels, n_boot: int = 1000, seed: int = 0,
                   batch_size: int = 64, progress: bool = False) -> dict:
    """Accuracy of each, paired t-test on per-example losses, McNemar, bootstrap CI of the difference."""
    check_same_labels(model_a, model_b)
    if len(texts) != len(labels) or not len(texts):
        raise AdvvizError("compare needs a non-empty list of texts with one label each")
    if max(labels) >= len(model_a.label_names) or min(labels) < 0:
        raise AdvvizError(f"labels outside the models' {len(model_a.label_names)} classes")
    la = predict_logits(model_a.classifier, list(texts), batch_size, progress)
    lb = predict_logits(model_b.classifier, list(texts), batch_size, progress)
    res = compare_predictions(la, lb, labels, n_boot, seed)
    return {"model_a": str(model_a.directory), "model_b": str(model_b.directory), **res,
            "significant_0.05": bool(res["p"] is not None and res["p"] < 0.05)}
