"""Classical baselines a fine-tuned model has to beat on the same split."""

from __future__ import annotations

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline


def tfidf_logistic_regression(
    train_texts: list[str], train_labels: np.ndarray, test_texts: list[str], *, num_classes: int, seed: int
) -> np.ndarray:
    """Probabilities on test_texts from TF-IDF (word 1-2 grams) + logistic regression."""
    pipeline = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True),
        LogisticRegression(max_iter=2000, C=10.0, random_state=seed),
    )
    pipeline.fit(train_texts, train_labels)
    probs = np.zeros((len(test_texts), num_classes))
    probs[:, pipeline.classes_] = pipeline.predict_proba(test_texts)
    return probs
