"""The pieces classical baselines are made of; each family names its own (`Family.baseline`).

A baseline takes the training inputs and targets and the test inputs, and returns test
predictions in the target's format (class probabilities, values, or risk scores).
Regularisation is chosen by cross-validation on the training split only, so a baseline is a
fair bar, not a strawman.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegressionCV


def folds(labels: np.ndarray) -> int:
    counts = np.bincount(labels)
    return max(int(min(3, counts[counts > 0].min())), 2)


def logreg(num_classes: int, labels: np.ndarray, seed: int) -> LogisticRegressionCV:
    return LogisticRegressionCV(
        Cs=[0.1, 1.0, 10.0, 100.0, 1000.0], cv=folds(labels), class_weight="balanced", max_iter=3000, random_state=seed
    )


def fit_proba(model, x_train, labels: np.ndarray, x_test, num_classes: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", UserWarning)  # folds where a rare class is missing
        warnings.simplefilter("ignore", FutureWarning)  # LogisticRegressionCV announcing 1.10/1.11 defaults
        model.fit(x_train, labels)
    probs = np.zeros((len(x_test), num_classes))
    probs[:, model.classes_] = model.predict_proba(x_test)
    return probs


@dataclass(frozen=True)
class BaselineContext:
    """What a baseline may know besides the data: label count, seed, the target, and the
    family's own `options` (`Family.baseline_context`: a k-mer size, feature names)."""

    num_classes: int
    seed: int
    target: object  # biomed.targets.Target
    options: Mapping = field(default_factory=dict)
