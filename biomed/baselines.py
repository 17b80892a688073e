"""Classical baselines a fine-tuned model has to beat on the same split.

Closed registry keyed by the task's `baseline` name. Each takes the training inputs and targets
and the test inputs, and returns test predictions in the task's format (class probabilities,
values, or risk scores). Regularisation is chosen by cross-validation on the training split
only, so a baseline is a fair bar, not a strawman.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegressionCV, RidgeCV
from sklearn.pipeline import make_pipeline

from biomed.tabular import TabularPreprocessor


def _folds(labels: np.ndarray) -> int:
    counts = np.bincount(labels)
    return max(int(min(3, counts[counts > 0].min())), 2)


def _logreg(num_classes: int, labels: np.ndarray, seed: int) -> LogisticRegressionCV:
    return LogisticRegressionCV(
        Cs=[0.1, 1.0, 10.0, 100.0, 1000.0], cv=_folds(labels), class_weight="balanced", max_iter=3000, random_state=seed
    )


def _fit_proba(model, x_train, labels: np.ndarray, x_test, num_classes: int) -> np.ndarray:
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
    """What a baseline may know besides the data: label count, seed, k-mer size, feature names."""

    num_classes: int
    seed: int
    target_kind: str
    kmer_size: int = 3
    numeric: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()


def tfidf_logreg(train_x: list, train_y: np.ndarray, test_x: list, ctx: BaselineContext) -> np.ndarray:
    """TF-IDF over words + logistic regression (C by 3-fold CV, class-balanced weights)."""
    pipeline = make_pipeline(TfidfVectorizer(sublinear_tf=True), _logreg(ctx.num_classes, train_y, ctx.seed))
    return _fit_proba(pipeline, train_x, train_y, test_x, ctx.num_classes)


def kmer_logreg(train_x: list, train_y: np.ndarray, test_x: list, ctx: BaselineContext) -> np.ndarray:
    """Counts of overlapping k-mers (1 to k residues or bases) + logistic regression."""
    vectorizer = TfidfVectorizer(analyzer="char", ngram_range=(1, max(ctx.kmer_size, 1)), lowercase=False, sublinear_tf=True)
    pipeline = make_pipeline(vectorizer, _logreg(ctx.num_classes, train_y, ctx.seed))
    return _fit_proba(pipeline, train_x, train_y, test_x, ctx.num_classes)


def morgan_random_forest(train_x: list, train_y: np.ndarray, test_x: list, ctx: BaselineContext) -> np.ndarray:
    """Morgan fingerprints (radius 2, 2048 bits) + a 500-tree random forest."""
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    from biomed.molecules import morgan_fingerprints

    x_train, x_test = morgan_fingerprints(train_x), morgan_fingerprints(test_x)
    if ctx.target_kind == "regression":
        forest = RandomForestRegressor(n_estimators=500, n_jobs=-1, random_state=ctx.seed).fit(x_train, train_y)
        return forest.predict(x_test)
    forest = RandomForestClassifier(n_estimators=500, n_jobs=-1, class_weight="balanced", random_state=ctx.seed)
    return _fit_proba(forest, x_train, train_y, x_test, ctx.num_classes)


def _features(train_x: list, test_x: list, ctx: BaselineContext) -> tuple[np.ndarray, np.ndarray]:
    # The model's own preprocessing, fitted on the training split only.
    prep = TabularPreprocessor.fit(train_x, numeric=list(ctx.numeric), categorical=list(ctx.categorical))
    return prep.transform(train_x), prep.transform(test_x)


def logistic_regression(train_x: list, train_y: np.ndarray, test_x: list, ctx: BaselineContext) -> np.ndarray:
    x_train, x_test = _features(train_x, test_x, ctx)
    return _fit_proba(_logreg(ctx.num_classes, train_y, ctx.seed), x_train, train_y, x_test, ctx.num_classes)


def ridge(train_x: list, train_y: np.ndarray, test_x: list, ctx: BaselineContext) -> np.ndarray:
    x_train, x_test = _features(train_x, test_x, ctx)
    return RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(x_train, train_y).predict(x_test)


def cox_ph(train_x: list, train_y: np.ndarray, test_x: list, ctx: BaselineContext) -> np.ndarray:
    """Cox proportional hazards (scikit-survival), with a small ridge penalty for stability;
    predictions are linear log-risk scores."""
    from sksurv.linear_model import CoxPHSurvivalAnalysis
    from sksurv.util import Surv

    x_train, x_test = _features(train_x, test_x, ctx)
    outcome = Surv.from_arrays(event=train_y[:, 1].astype(bool), time=train_y[:, 0])
    return CoxPHSurvivalAnalysis(alpha=0.1).fit(x_train, outcome).predict(x_test)


# The pixel baselines see each image as grayscale at this side (32 × 32 = 1,024 intensities).
PIXEL_SIDE = 32


def _pixels(images: list) -> np.ndarray:
    """Decoded images (biomed.images) downsampled to PIXEL_SIDE² grayscale intensities, flattened."""
    from biomed.image_transforms import ImagePipeline

    pipeline = ImagePipeline(image_size=PIXEL_SIDE, channels=1, intensity="unit")
    return np.stack([pipeline.prepare(image).ravel() for image in images]) if images else np.zeros((0, PIXEL_SIDE**2))


def pixel_logreg(train_x: list, train_y: np.ndarray, test_x: list, ctx: BaselineContext) -> np.ndarray:
    """Standardised 32×32 grayscale intensities + logistic regression (C by CV, balanced)."""
    from sklearn.preprocessing import StandardScaler

    pipeline = make_pipeline(StandardScaler(), _logreg(ctx.num_classes, train_y, ctx.seed))
    return _fit_proba(pipeline, _pixels(train_x), train_y, _pixels(test_x), ctx.num_classes)


def pixel_ridge(train_x: list, train_y: np.ndarray, test_x: list, ctx: BaselineContext) -> np.ndarray:
    """Standardised 32×32 grayscale intensities + ridge regression (alpha by CV)."""
    from sklearn.preprocessing import StandardScaler

    pipeline = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 4, 13)))
    return pipeline.fit(_pixels(train_x), train_y).predict(_pixels(test_x))


BASELINES: dict[str, Callable[[list, np.ndarray, list, BaselineContext], np.ndarray]] = {
    "tfidf_logreg": tfidf_logreg,
    "kmer_logreg": kmer_logreg,
    "morgan_random_forest": morgan_random_forest,
    "logistic_regression": logistic_regression,
    "ridge": ridge,
    "cox_ph": cox_ph,
    "pixel_logreg": pixel_logreg,
    "pixel_ridge": pixel_ridge,
}

