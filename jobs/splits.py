"""The train/validation/test examples of a spec, identical in the driver and in every worker."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from biomed.data import LabelledText, load_labelled_text, stratified_split
from jobs.spec import JobSpec


@dataclass
class Split:
    texts: list[str]
    label_ids: np.ndarray

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class Splits:
    train: Split
    validation: Split
    test: Split | None
    report: dict


def _subset(data: LabelledText, rows: np.ndarray) -> Split:
    return Split(texts=[data.texts[i] for i in rows], label_ids=data.label_ids[rows])


def load_splits(spec: JobSpec) -> Splits:
    """Load the spec's data; validation is a stratified hold-out unless a file is given."""
    d = spec.data
    labels = spec.task.labels
    kwargs = {"text_column": d.text_column, "label_column": d.label_column, "labels": labels}
    train_all = load_labelled_text(d.train_path, **kwargs)
    report: dict = {"dropped": {"train": [x.as_dict() for x in train_all.dropped]}}
    if d.validation_path is not None:
        train = _subset(train_all, np.arange(len(train_all.texts)))
        val_data = load_labelled_text(d.validation_path, **kwargs)
        validation = _subset(val_data, np.arange(len(val_data.texts)))
        report["dropped"]["validation"] = [x.as_dict() for x in val_data.dropped]
    else:
        train_idx, val_idx = stratified_split(train_all.label_ids, fraction=d.validation_fraction, seed=d.split_seed)
        train, validation = _subset(train_all, train_idx), _subset(train_all, val_idx)
    test = None
    if d.test_path is not None:
        test_data = load_labelled_text(d.test_path, **kwargs)
        test = _subset(test_data, np.arange(len(test_data.texts)))
        report["dropped"]["test"] = [x.as_dict() for x in test_data.dropped]
    if len(train) == 0 or len(validation) == 0:
        raise ValueError(f"empty split: {len(train)} training and {len(validation)} validation rows after dropping bad rows")
    report["rows"] = {"train": len(train), "validation": len(validation), "test": len(test) if test else 0}
    report["class_counts"] = {
        "train": {labels[k]: int(n) for k, n in enumerate(np.bincount(train.label_ids, minlength=len(labels)))},
    }
    return Splits(train=train, validation=validation, test=test, report=report)
