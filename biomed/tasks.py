"""Closed registry of task families, keyed by name.

A task says which metrics it produces, which one selects checkpoints by default, and how to
turn model outputs into metrics. New families register here; user YAML only names them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from biomed.metrics import classification_metrics


class Task(Protocol):
    name: str
    metric_names: tuple[str, ...]
    default_metric: str

    def metric_mode(self, metric: str) -> str: ...

    def compute_metrics(self, labels: np.ndarray, probs: np.ndarray) -> dict[str, float]: ...


@dataclass(frozen=True)
class TextClassificationTask:
    """Free text (clinical notes, reviews) to one of a fixed set of labels."""

    name: str = "text_classification"
    metric_names: tuple[str, ...] = ("accuracy", "macro_f1", "auroc", "loss")
    default_metric: str = "macro_f1"
    input_kind: str = "text"
    # Fixed input whose prediction is recorded at registration; a serving replica must reproduce
    # it before it reports healthy (the golden check).
    probe_input: str = "I have taken this medicine every day for three months and it has helped a lot."

    def metric_mode(self, metric: str) -> str:
        return "min" if metric == "loss" else "max"

    def compute_metrics(self, labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
        return classification_metrics(labels, probs)


TASKS: dict[str, Task] = {task.name: task for task in (TextClassificationTask(),)}


def get_task(name: str) -> Task:
    """Look a task up by name; the error lists the known ones."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; known tasks: {sorted(TASKS)}") from None
