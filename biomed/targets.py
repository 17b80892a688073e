"""What a model predicts: class labels, a real value, or a survival risk.

Each target kind says how many outputs the model has, its training loss, how raw outputs become
predictions, and which metrics score them. Targets are arrays: class ids (N,), values (N,), or
(time, event) pairs (N, 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch


class Target(Protocol):
    kind: str
    metric_names: tuple[str, ...]
    minimised: frozenset[str]

    def num_outputs(self, num_labels: int) -> int: ...

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor, class_weights: torch.Tensor | None) -> torch.Tensor: ...

    def predictions(self, outputs: np.ndarray, scaling: dict | None) -> np.ndarray: ...

    def metrics(self, targets: np.ndarray, predictions: np.ndarray, names: tuple[str, ...] | None = None) -> dict[str, float]: ...


@dataclass(frozen=True)
class ClassificationTarget:
    kind: str = "classification"
    metric_names: tuple[str, ...] = ("accuracy", "macro_f1", "mcc", "auroc", "auprc", "ece", "loss")
    minimised: frozenset[str] = frozenset({"loss", "ece"})

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


@dataclass(frozen=True)
class RegressionTarget:
    """Trained on standardised values (mean and std of the training split, stored with the
    checkpoint), so one learning rate suits targets of any scale; predictions are in the
    target's own units."""

    kind: str = "regression"
    metric_names: tuple[str, ...] = ("rmse", "mae", "r2", "spearman")
    minimised: frozenset[str] = frozenset({"rmse", "mae"})

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


TARGETS: dict[str, Target] = {t.kind: t for t in (ClassificationTarget(), RegressionTarget(), SurvivalTarget())}
