"""Evaluation metrics (scikit-learn, SciPy, scikit-survival) and their bootstrap intervals."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np
from scipy.stats import spearmanr
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    f1_score,
    log_loss,
    matthews_corrcoef,
    mean_absolute_error,
    r2_score,
    roc_auc_score,
    root_mean_squared_error,
)


def _per_class(score, labels: np.ndarray, probs: np.ndarray) -> float:
    """A binary score macro-averaged one-vs-rest over the classes that have positives and
    negatives; for two classes, the score of class 1.

    A validation split of a rare class often holds no example of it; sklearn's multi-class
    scores raise then, so absent classes are left out rather than failing the epoch.
    """
    num_classes = probs.shape[1]
    if num_classes == 2:
        if len(np.unique(labels)) < 2:
            return math.nan
        return float(score(labels == 1, probs[:, 1]))
    scores = []
    for k in range(num_classes):
        positives = labels == k
        if positives.any() and (~positives).any():
            scores.append(score(positives, probs[:, k]))
    return float(np.mean(scores)) if scores else math.nan


def one_vs_rest_auroc(labels: np.ndarray, probs: np.ndarray) -> float:
    return _per_class(roc_auc_score, labels, probs)


def expected_calibration_error(labels: np.ndarray, probs: np.ndarray, *, num_bins: int = 15) -> float:
    """Top-label ECE: |accuracy - confidence| averaged over equal-width confidence bins,
    weighted by the share of rows in each bin (Guo et al., 2017)."""
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    bins = np.minimum((confidence * num_bins).astype(np.int64), num_bins - 1)
    total = np.bincount(bins, minlength=num_bins)
    gap = np.abs(np.bincount(bins, weights=correct, minlength=num_bins) - np.bincount(bins, weights=confidence, minlength=num_bins))
    return float(gap.sum() / max(total.sum(), 1))


def _class_probs(labels, probs) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    # float32 softmax rows miss 1.0 by ~1e-7, which log_loss warns about; renormalise in float64.
    return labels, probs / probs.sum(axis=1, keepdims=True)


CLASSIFICATION_METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "accuracy": lambda y, p: float(accuracy_score(y, p.argmax(axis=1))),
    "macro_f1": lambda y, p: float(f1_score(y, p.argmax(axis=1), average="macro", labels=np.unique(y), zero_division=0)),
    "mcc": lambda y, p: float(matthews_corrcoef(y, p.argmax(axis=1))),
    "auroc": one_vs_rest_auroc,
    "auprc": lambda y, p: _per_class(average_precision_score, y, p),
    "ece": expected_calibration_error,
    "loss": lambda y, p: float(log_loss(y, np.clip(p, 1e-12, 1.0), labels=list(range(p.shape[1])))),
}


def classification_metrics(labels: np.ndarray, probs: np.ndarray, names: tuple[str, ...] | None = None) -> dict[str, float]:
    """Accuracy, macro-F1, MCC, one-vs-rest AUROC and AUPRC, calibration error and cross-entropy."""
    labels, probs = _class_probs(labels, probs)
    return {k: f(labels, probs) for k, f in CLASSIFICATION_METRICS.items() if names is None or k in names}


def _spearman(values: np.ndarray, preds: np.ndarray) -> float:
    if np.ptp(preds) == 0 or np.ptp(values) == 0:
        return math.nan
    return float(spearmanr(values, preds).statistic)


REGRESSION_METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "rmse": lambda y, p: float(root_mean_squared_error(y, p)),
    "mae": lambda y, p: float(mean_absolute_error(y, p)),
    "r2": lambda y, p: float(r2_score(y, p)) if len(y) > 1 else math.nan,
    "spearman": _spearman,
}


def regression_metrics(values: np.ndarray, preds: np.ndarray, names: tuple[str, ...] | None = None) -> dict[str, float]:
    """RMSE, MAE, R² and Spearman rank correlation in the target's own units."""
    values, preds = np.asarray(values, dtype=np.float64), np.asarray(preds, dtype=np.float64)
    return {k: f(values, preds) for k, f in REGRESSION_METRICS.items() if names is None or k in names}


def concordance_index(time: np.ndarray, event: np.ndarray, risk: np.ndarray) -> float:
    """Harrell's concordance index (scikit-survival); nan when no pair is comparable."""
    from sksurv.metrics import concordance_index_censored

    event = np.asarray(event).astype(bool)
    if not event.any():
        return math.nan
    try:
        return float(concordance_index_censored(event, np.asarray(time, dtype=np.float64), np.asarray(risk, dtype=np.float64))[0])
    except ValueError:  # all times tied among events: no comparable pair
        return math.nan


def bootstrap_ci(
    statistic: Callable[[np.ndarray], float], num_rows: int, *, num_resamples: int = 1000, seed: int = 0, confidence: float = 0.95
) -> list[float]:
    """Percentile bootstrap interval of `statistic(rows)` over rows resampled with replacement.

    `statistic` takes an index array, so paired inputs (labels with probabilities, times with
    events and risks) are resampled together. Resamples where the metric is undefined (say, one
    class only) are left out rather than turning the interval into nan.
    """

    rng = np.random.default_rng(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # per-resample warnings (one class, degenerate bins)
        dist = np.array([statistic(rng.integers(0, num_rows, num_rows)) for _ in range(num_resamples)], dtype=np.float64)
    dist = dist[np.isfinite(dist)]
    if dist.size < num_resamples // 2:
        return [math.nan, math.nan]
    alpha = (1 - confidence) / 2
    return [float(np.quantile(dist, alpha)), float(np.quantile(dist, 1 - alpha))]
