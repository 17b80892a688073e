"""What a model predicts: class labels, a real value, or a survival risk.

Each target says how many outputs the model has, its training loss, how raw outputs become
predictions, which metrics score them, which data columns hold it, how a table's values become
target arrays, what a split is stratified by, and how one prediction reads as JSON. The rest of
the service asks the target these questions; it never compares target names. Targets are
arrays: class ids (N,), values (N,), or (time, event) pairs (N, 2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np
import pyarrow as pa
import torch

MAX_REPORTED_ROWS = 10


class Target(Protocol):
    kind: str
    metric_names: tuple[str, ...]
    minimised: frozenset[str]
    # Whether the target is one of a fixed set of labels (task.labels, class weights, a label per prediction).
    has_labels: bool
    # How a validation part is held out when the spec names no split method.
    default_split: str
    # Whether a split can be stratified by it (by class, or by event).
    stratifiable: bool

    def num_outputs(self, num_labels: int) -> int: ...

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor, class_weights: torch.Tensor | None) -> torch.Tensor: ...

    def predictions(self, outputs: np.ndarray, scaling: dict | None) -> np.ndarray: ...

    def metrics(self, targets: np.ndarray, predictions: np.ndarray, names: tuple[str, ...] | None = None) -> dict[str, float]: ...

    def columns(self, data) -> dict[str, str | None]: ...

    def parse(self, table: pa.Table, columns, rows: np.ndarray, *, labels: list[str] | None, fail: Callable) -> np.ndarray: ...

    def strata(self, targets: np.ndarray) -> np.ndarray | None: ...

    def statistics(self, num_classes: int) -> TargetStatistics: ...

    def scaling(self, train_targets: np.ndarray | None, *, statistics: dict | None = None) -> dict | None: ...

    def describe(self, prediction: np.ndarray, labels: list[str]) -> dict: ...

    # Split conformal (biomed/conformal.py): the nonconformity score of each (target, prediction)
    # (None: the target has none), what a prediction becomes at a threshold, and its size.
    conformal_method: str | None

    def conformity_scores(self, targets: np.ndarray, predictions: np.ndarray) -> np.ndarray | None: ...

    def conformal(self, prediction: np.ndarray, threshold: float, labels: list[str]) -> dict: ...

    def conformal_size(self, predictions: np.ndarray, threshold: float) -> dict: ...


class TargetStatistics(Protocol):
    """A split's target summary, one unit of examples at a time (streamed training data)."""

    def update(self, examples) -> None: ...

    def result(self) -> dict: ...


def _numbers(table: pa.Table, column: str, rows: np.ndarray, fail: Callable) -> np.ndarray:
    raw = table.column(column).to_pylist()
    out, bad = np.zeros(rows.size), []
    for k, i in enumerate(rows):
        try:
            out[k] = float(raw[i])
        except (TypeError, ValueError):
            bad.append(int(i))
    if bad or not np.isfinite(out).all():
        fail(column, "not a finite number", bad or [int(i) for i in rows[~np.isfinite(out)]], raw)
    return out


@dataclass
class ClassCounts:
    num_classes: int
    counts: np.ndarray | None = None

    def update(self, examples) -> None:
        counts = np.bincount(examples.targets, minlength=self.num_classes)
        self.counts = counts if self.counts is None else self.counts + counts

    def result(self) -> dict:
        return {"class_counts": [int(c) for c in (self.counts if self.counts is not None else np.zeros(self.num_classes))]}


@dataclass
class Moments:
    n: int = 0
    total: float = 0.0
    total_sq: float = 0.0

    def update(self, examples) -> None:
        t = examples.targets
        self.n += len(t)
        self.total += float(np.sum(t, dtype=np.float64))
        self.total_sq += float(np.sum(np.square(t, dtype=np.float64)))

    def result(self) -> dict:
        mean = self.total / max(self.n, 1)
        return {"mean": mean, "std": float(np.sqrt(max(self.total_sq / max(self.n, 1) - mean * mean, 0.0)))}


@dataclass
class EventCount:
    events: float = 0.0

    def update(self, examples) -> None:
        self.events += float(examples.targets[:, 1].sum()) if len(examples.targets) else 0.0

    def result(self) -> dict:
        return {"events": int(self.events)}


@dataclass(frozen=True)
class ClassificationTarget:
    kind: str = "classification"
    metric_names: tuple[str, ...] = ("accuracy", "macro_f1", "mcc", "auroc", "auprc", "ece", "loss")
    minimised: frozenset[str] = frozenset({"loss", "ece"})
    has_labels: bool = True
    default_split: str = "stratified"
    stratifiable: bool = True

    def num_outputs(self, num_labels: int) -> int:
        return num_labels

    def loss(self, outputs, targets, class_weights):
        return torch.nn.functional.cross_entropy(outputs.float(), targets.long(), weight=class_weights)

    def predictions(self, outputs, scaling):
        """Class probabilities (N, K)."""
        return torch.softmax(torch.from_numpy(outputs).float(), dim=-1).numpy()

    def metrics(self, targets, predictions, names=None):
        # scikit-learn is imported where metrics are computed: a process that only builds a run
        # (a Tune trial driver) skips its second of imports.
        from biomed.metrics import classification_metrics

        return classification_metrics(targets, predictions, names)

    def columns(self, data) -> dict:
        return {"label": data.label_column}

    def parse(self, table, columns, rows, *, labels, fail):
        raw = table.column(columns.label).to_pylist()
        index = {name: i for i, name in enumerate(labels)}
        bad = [int(i) for i in rows if str(raw[i]) not in index]
        if bad:
            fail(columns.label, "outside the task's labels", bad, raw)
        return np.array([index[str(raw[i])] for i in rows], dtype=np.int64)

    def strata(self, targets):
        return targets

    def statistics(self, num_classes: int) -> ClassCounts:
        return ClassCounts(num_classes)

    def scaling(self, train_targets, *, statistics=None):
        return None  # trained as they are

    def describe(self, prediction, labels):
        return {"label": labels[int(np.argmax(prediction))], "probabilities": {k: float(p) for k, p in zip(labels, prediction)}}

    conformal_method: str = "lac"  # least ambiguous set-valued classifier: score 1 - p(true label)

    def conformity_scores(self, targets, predictions):
        return 1.0 - predictions[np.arange(len(targets)), targets.astype(np.int64)]

    def conformal(self, prediction, threshold, labels):
        """The labels whose 1 - p is within the threshold, most probable first."""
        order = np.argsort(-np.asarray(prediction), kind="stable")
        return {"prediction_set": [labels[k] for k in order if 1.0 - prediction[k] <= threshold]}

    def conformal_size(self, predictions, threshold):
        return {"mean_set_size": float(np.mean(np.sum(1.0 - predictions <= threshold, axis=1)))}


@dataclass(frozen=True)
class RegressionTarget:
    """Trained on standardised values (mean and std of the training split, stored with the
    checkpoint), so one learning rate suits targets of any scale; predictions are in the
    target's own units."""

    kind: str = "regression"
    metric_names: tuple[str, ...] = ("rmse", "mae", "r2", "spearman")
    minimised: frozenset[str] = frozenset({"rmse", "mae"})
    has_labels: bool = False
    default_split: str = "random"
    stratifiable: bool = False

    def num_outputs(self, num_labels: int) -> int:
        return 1

    def loss(self, outputs, targets, class_weights):
        return torch.nn.functional.mse_loss(outputs.float().squeeze(-1), targets.float())

    def predictions(self, outputs, scaling):
        """Values (N,) in the target's units."""
        return outputs[:, 0].astype(np.float64) * scaling["std"] + scaling["mean"]

    def metrics(self, targets, predictions, names=None):
        from biomed.metrics import regression_metrics

        return regression_metrics(targets, predictions, names)

    def columns(self, data) -> dict:
        return {"label": data.label_column}

    def parse(self, table, columns, rows, *, labels, fail):
        return _numbers(table, columns.label, rows, fail)

    def strata(self, targets):
        return None  # a real value has no classes to stratify by

    def statistics(self, num_classes: int) -> Moments:
        return Moments()

    def scaling(self, train_targets, *, statistics=None):
        """Mean and std of the training targets (or of a streamed split's moments)."""
        mean, std = (float(train_targets.mean()), float(train_targets.std())) if statistics is None else (statistics["mean"], statistics["std"])
        return {"mean": mean, "std": std if std > 1e-12 else 1.0}

    def describe(self, prediction, labels):
        return {"value": float(prediction)}

    conformal_method: str = "absolute_residual"

    def conformity_scores(self, targets, predictions):
        return np.abs(np.asarray(targets, dtype=np.float64) - np.asarray(predictions, dtype=np.float64))

    def conformal(self, prediction, threshold, labels):
        return {"interval": [float(prediction) - threshold, float(prediction) + threshold]}

    def conformal_size(self, predictions, threshold):
        return {"interval_width": 2 * threshold}


def cox_partial_likelihood_loss(risk: torch.Tensor, time: torch.Tensor, event: torch.Tensor) -> torch.Tensor:
    """Negative Cox partial log-likelihood (Breslow's handling of ties), mean over events.

    Each event's risk set is every row of the batch still under observation at its time: rows
    sorted by time, descending, make that set a prefix, so a cumulative log-sum-exp gives every
    denominator at once. A batch with no event carries no signal and contributes zero.
    """
    order = torch.argsort(time, descending=True, stable=True)
    risk, time, event = risk[order], time[order], event[order]
    log_denominator = torch.logcumsumexp(risk, dim=0)
    # Tied times share a risk set: each takes the denominator of the last row of its tie group.
    last_of_tie = torch.searchsorted(-time, -time, right=True) - 1
    log_denominator = log_denominator[last_of_tie]
    num_events = event.sum()
    if num_events == 0:
        return risk.sum() * 0.0
    return -((risk - log_denominator) * event).sum() / num_events


@dataclass(frozen=True)
class SurvivalTarget:
    """Right-censored (time, event) pairs; the model outputs a log-risk score (higher: earlier
    event), trained with the Cox partial likelihood and scored by the concordance index."""

    kind: str = "survival"
    metric_names: tuple[str, ...] = ("c_index", "loss")
    minimised: frozenset[str] = frozenset({"loss"})
    has_labels: bool = False
    default_split: str = "stratified"  # by event
    stratifiable: bool = True

    def num_outputs(self, num_labels: int) -> int:
        return 1

    def loss(self, outputs, targets, class_weights):
        return cox_partial_likelihood_loss(outputs.float().squeeze(-1), targets[:, 0].float(), targets[:, 1].float())

    def predictions(self, outputs, scaling):
        """Log-risk scores (N,)."""
        return outputs[:, 0].astype(np.float64)

    def metrics(self, targets, predictions, names=None):
        out = {}
        if names is None or "c_index" in names:
            from biomed.metrics import concordance_index

            out["c_index"] = concordance_index(targets[:, 0], targets[:, 1], predictions)
        if names is None or "loss" in names:
            predictions = np.asarray(predictions, dtype=np.float64)
            out["loss"] = float(cox_partial_likelihood_loss(torch.from_numpy(predictions), torch.from_numpy(targets[:, 0]), torch.from_numpy(targets[:, 1])))
        return out

    def columns(self, data) -> dict:
        # The time and event columns are the tabular family's data fields (survival is a target of it).
        return {"time": getattr(data, "time_column", None), "event": getattr(data, "event_column", None)}

    def parse(self, table, columns, rows, *, labels, fail):
        time, event = _numbers(table, columns.time, rows, fail), _numbers(table, columns.event, rows, fail)
        if (time < 0).any():
            fail(columns.time, "negative", [int(i) for i in rows[time < 0]], table.column(columns.time).to_pylist())
        if not np.isin(event, (0.0, 1.0)).all():
            fail(columns.event, "not an event indicator (0/1 or false/true)", [int(i) for i in rows[~np.isin(event, (0.0, 1.0))]], table.column(columns.event).to_pylist())
        return np.stack([time, event], axis=1)

    def strata(self, targets):
        return targets[:, 1].astype(np.int64)

    def statistics(self, num_classes: int) -> EventCount:
        return EventCount()

    def scaling(self, train_targets, *, statistics=None):
        return None  # trained as they are

    def describe(self, prediction, labels):
        return {"risk_score": float(prediction)}

    # A Cox log-risk score has no target scale to put an interval on, and censored times have
    # no residual: no conformal set.
    conformal_method: None = None

    def conformity_scores(self, targets, predictions):
        return None


@dataclass(frozen=True)
class NoTarget:
    """An unlabelled corpus (pretraining): rows carry no target."""

    kind: str = "none"
    metric_names: tuple[str, ...] = ()
    minimised: frozenset[str] = field(default_factory=frozenset)
    has_labels: bool = False
    default_split: str = "random"
    stratifiable: bool = False

    def columns(self, data) -> dict:
        return {}

    def parse(self, table, columns, rows, *, labels, fail):
        return np.zeros(rows.size, dtype=np.int64)


TARGETS: dict[str, Target] = {t.kind: t for t in (ClassificationTarget(), RegressionTarget(), SurvivalTarget())}
NO_TARGET = NoTarget()

