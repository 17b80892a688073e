"""Evaluation metrics, computed with scikit-learn."""

from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score


def one_vs_rest_auroc(labels: np.ndarray, probs: np.ndarray) -> float:
    """Macro one-vs-rest AUROC over the classes that have both positives and negatives.

    A validation split of a rare class often holds no example of it; sklearn's multi-class
    AUROC raises then, so absent classes are left out rather than failing the epoch.
    """
    num_classes = probs.shape[1]
    if num_classes == 2:
        if len(np.unique(labels)) < 2:
            return math.nan
        return float(roc_auc_score(labels, probs[:, 1]))
    scores = []
    for k in range(num_classes):
        positives = labels == k
        if positives.any() and (~positives).any():
            scores.append(roc_auc_score(positives, probs[:, k]))
    return float(np.mean(scores)) if scores else math.nan


def classification_metrics(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """Accuracy, macro-F1, one-vs-rest AUROC and cross-entropy of predicted probabilities."""
    labels = np.asarray(labels, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    # float32 softmax rows miss 1.0 by ~1e-7, which log_loss warns about; renormalise in float64.
    probs = probs / probs.sum(axis=1, keepdims=True)
    preds = probs.argmax(axis=1)
    num_classes = probs.shape[1]
    return {
        "accuracy": float(accuracy_score(labels, preds)),
        "macro_f1": float(
            f1_score(labels, preds, average="macro", labels=np.unique(labels), zero_division=0)
        ),
        "auroc": one_vs_rest_auroc(labels, probs),
        "loss": float(log_loss(labels, np.clip(probs, 1e-12, 1.0), labels=list(range(num_classes)))),
    }
