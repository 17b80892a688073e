"""The train/validation/test examples of a spec, identical in the driver and in every worker."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from biomed.data import Examples, load_examples, random_split, stratified_split
from biomed.inputs import TabularValidator, sequence_validator
from biomed.molecules import scaffold_split
from biomed.tasks import get_task
from jobs.spec import JobSpec


@dataclass
class Split:
    inputs: list
    targets: np.ndarray

    def __len__(self) -> int:
        return len(self.inputs)


@dataclass
class Splits:
    train: Split
    validation: Split
    test: Split | None
    report: dict


def _subset(data: Examples, rows: np.ndarray) -> Split:
    return Split(inputs=[data.inputs[i] for i in rows], targets=data.targets[rows])


def input_validator(spec: JobSpec):
    """The family's input check for this spec, as used on training files and on requests."""
    task = get_task(spec.task.name)
    d = spec.data
    if task.input_kind == "tabular":
        return TabularValidator(numeric=tuple(d.numeric_columns), categorical=tuple(d.categorical_columns))
    # A DNA sequence shorter than one k-mer has no token to give.
    min_length = spec.model.kmer_size if task.input_kind == "dna" else 1
    return sequence_validator(task.input_kind, min_length=min_length, canonicalize=d.canonicalize_smiles)


def _hold_out(spec: JobSpec, data: Examples) -> tuple[np.ndarray, np.ndarray]:
    d = spec.data
    method = spec.split_method
    if method == "scaffold":
        return scaffold_split(data.inputs, fraction=d.validation_fraction)
    if method == "random":
        return random_split(len(data.inputs), fraction=d.validation_fraction, seed=d.split_seed)
    strata = data.targets[:, 1].astype(np.int64) if data.targets.ndim == 2 else data.targets
    return stratified_split(strata, fraction=d.validation_fraction, seed=d.split_seed)


def load_splits(spec: JobSpec) -> Splits:
    """Load the spec's data; validation is held out of the training file unless a file is given."""
    d = spec.data
    task = get_task(spec.task.name)
    kwargs = {
        "columns": spec.columns(),
        "target_kind": task.target_kind,
        "labels": spec.task.labels,
        "validator": input_validator(spec),
        "on_invalid": d.invalid_inputs,
    }
    train_all = load_examples(d.train_path, **kwargs)
    report: dict = {"dropped": {"train": [x.as_dict() for x in train_all.dropped]}, "split": spec.split_method if d.validation_path is None else "file"}
    if d.validation_path is not None:
        train = _subset(train_all, np.arange(len(train_all.inputs)))
        val_data = load_examples(d.validation_path, **kwargs)
        validation = _subset(val_data, np.arange(len(val_data.inputs)))
        report["dropped"]["validation"] = [x.as_dict() for x in val_data.dropped]
    else:
        train_idx, val_idx = _hold_out(spec, train_all)
        train, validation = _subset(train_all, train_idx), _subset(train_all, val_idx)
    test = None
    if d.test_path is not None:
        test_data = load_examples(d.test_path, **kwargs)
        test = _subset(test_data, np.arange(len(test_data.inputs)))
        report["dropped"]["test"] = [x.as_dict() for x in test_data.dropped]
    if len(train) == 0 or len(validation) == 0:
        raise ValueError(f"empty split: {len(train)} training and {len(validation)} validation rows after dropping bad rows")
    report["rows"] = {"train": len(train), "validation": len(validation), "test": len(test) if test else 0}
    if task.target_kind == "classification":
        labels = spec.task.labels
        report["class_counts"] = {
            "train": {labels[k]: int(n) for k, n in enumerate(np.bincount(train.targets, minlength=len(labels)))},
        }
    elif task.target_kind == "survival":
        report["events"] = {"train": int(train.targets[:, 1].sum()), "validation": int(validation.targets[:, 1].sum())}
    return Splits(train=train, validation=validation, test=test, report=report)
