"""Closed registry of task families, keyed by name.

A task pairs an input kind (text, dna, protein, smiles, tabular, image) with a target kind
(classification, regression, survival): which metrics it produces, which one selects
checkpoints by default, which baseline it is compared with. New families register here; user
YAML only names them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from biomed.targets import TARGETS, Target

SEQUENCE_INPUTS = ("text", "dna", "protein", "smiles")


@dataclass(frozen=True)
class Task:
    name: str
    input_kind: str
    target_kind: str
    default_metric: str
    baseline: str
    description: str

    @property
    def target(self) -> Target:
        return TARGETS[self.target_kind]

    @property
    def metric_names(self) -> tuple[str, ...]:
        return self.target.metric_names

    @property
    def is_sequence(self) -> bool:
        return self.input_kind in SEQUENCE_INPUTS

    @property
    def has_input_column(self) -> bool:
        """Whether the input is one column (a sequence or an image file), not feature columns."""
        return self.input_kind != "tabular"

    def metric_mode(self, metric: str) -> str:
        return "min" if metric in self.target.minimised else "max"

    def compute_metrics(self, targets: np.ndarray, predictions: np.ndarray, names: tuple[str, ...] | None = None) -> dict[str, float]:
        return self.target.metrics(targets, predictions, names)


TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task("text_classification", "text", "classification", "macro_f1", "tfidf_logreg", "Free text (clinical notes, reviews) to one of a fixed set of labels."),
        Task("dna_classification", "dna", "classification", "auroc", "kmer_logreg", "DNA sequences (A/C/G/T/N) to labels, tokenized as overlapping k-mers."),
        Task("protein_classification", "protein", "classification", "auroc", "kmer_logreg", "Protein sequences (20 amino acids + X) to labels."),
        Task("molecule_classification", "smiles", "classification", "auroc", "morgan_random_forest", "Molecules as SMILES to labels."),
        Task("molecule_regression", "smiles", "regression", "rmse", "morgan_random_forest", "Molecules as SMILES to a real-valued property."),
        Task("tabular_classification", "tabular", "classification", "auroc", "logistic_regression", "Numeric and categorical features to labels."),
        Task("tabular_regression", "tabular", "regression", "rmse", "ridge", "Numeric and categorical features to a real value."),
        Task("image_classification", "image", "classification", "auroc", "pixel_logreg", "Images (PNG, JPEG, DICOM) to labels."),
        Task("image_regression", "image", "regression", "rmse", "pixel_ridge", "Images (PNG, JPEG, DICOM) to a real value."),
        Task("survival", "tabular", "survival", "c_index", "cox_ph", "Right-censored time-to-event records to a risk score (Cox partial likelihood)."),
    )
}


def get_task(name: str) -> Task:
    """Look a task up by name; the error lists the known ones."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; known tasks: {sorted(TASKS)}") from None
