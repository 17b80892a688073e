"""Classical baselines a fine-tuned model has to beat on the same split."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegressionCV
from sklearn.pipeline import make_pipeline


def tfidf_logistic_regression(
    train_texts: list[str], train_labels: np.ndarray, test_texts: list[str], *, num_classes: int, seed: int
) -> np.ndarray:
    """Probabilities on test_texts from TF-IDF + logistic regression.

    A fair baseline, not a strawman: the regularisation strength is chosen by 3-fold
    cross-validation on the training split only, with class-balanced weights (the labels of
    clinical text are rarely balanced).
    """
    folds = int(min(3, np.bincount(train_labels)[np.bincount(train_labels) > 0].min()))
    pipeline = make_pipeline(
        TfidfVectorizer(sublinear_tf=True),
        LogisticRegressionCV(
            Cs=[0.1, 1.0, 10.0, 100.0, 1000.0], cv=max(folds, 2), class_weight="balanced", max_iter=3000, random_state=seed
        ),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", UserWarning)  # folds where a rare class is missing
        pipeline.fit(train_texts, train_labels)
    probs = np.zeros((len(test_texts), num_classes))
    probs[:, pipeline.classes_] = pipeline.predict_proba(test_texts)
    return probs
