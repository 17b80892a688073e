"""The train/validation/test examples of a spec, identical in the driver and in every worker.

A split is held in memory (`Split`) or streamed (`StreamedSplit`: files read a unit at a time,
described by the index of one pass over them). Training data is streamed per `data.streaming`;
validation and test sets beyond `data.in_memory_max_rows` rows are streamed too. The driver makes
the pass (so bad data stops before Ray starts) and hands the index to the workers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from biomed.data import Examples, load_examples, random_split, stratified_split
from biomed.encoding import encoder_statistics
from biomed.streams import StreamIndex, TargetStatistics, scan, total_rows
from biomed.inputs import TabularValidator, sequence_validator
from biomed.molecules import scaffold_split
from biomed.tasks import get_task
from jobs.model_spec import graph_settings
from jobs.spec import JobSpec, SpecError, model_folder


@dataclass
class Split:
    inputs: list
    targets: np.ndarray
    dropped: list = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.inputs)


@dataclass
class StreamedSplit:
    """A split read from its files a unit at a time; `index` is what the pass before training found."""

    index: StreamIndex

    def __len__(self) -> int:
        return self.index.num_rows


@dataclass
class Splits:
    train: Split | StreamedSplit
    validation: Split | StreamedSplit
    test: Split | StreamedSplit | None
    report: dict

    def streams(self) -> dict:
        """The streamed splits' indexes as plain dicts, for the workers' config."""
        return {role: split.index.to_dict() for role, split in (("train", self.train), ("validation", self.validation), ("test", self.test)) if isinstance(split, StreamedSplit)}


def _subset(data: Examples, rows: np.ndarray) -> Split:
    return Split(inputs=[data.inputs[i] for i in rows], targets=data.targets[rows])


def input_validator(spec: JobSpec):
    """The family's input check for this spec, as used on training files and on requests."""
    task = get_task(spec.task.name)
    d = spec.data
    if task.input_kind == "tabular":
        return TabularValidator(numeric=tuple(d.numeric_columns), categorical=tuple(d.categorical_columns))
    if task.input_kind == "image":
        return d.images.validator()
    # A DNA sequence shorter than one k-mer has no token to give.
    min_length = (spec.model.kmer_size or 1) if task.input_kind == "dna" else 1
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


def checks_for(spec: JobSpec) -> dict:
    """The keyword arguments of `biomed.data.examples_from_table` for this spec."""
    task = get_task(spec.task.name)
    return {
        "target_kind": task.target_kind,
        "labels": spec.task.labels,
        "validator": input_validator(spec),
        "on_invalid": spec.data.invalid_inputs,
    }


def streams_training(spec: JobSpec) -> bool:
    """Whether the training data is streamed: per `data.streaming`, auto by its row count."""
    d = spec.data
    if d.streaming != "auto":
        return d.streaming == "on"
    rows = total_rows(d.files_of("train_path"))
    reason = spec.in_memory_reason()
    if rows > d.in_memory_max_rows and reason is not None:
        # Checked before any compute, like data.streaming 'on' in the spec.
        raise SpecError(f"{reason}; it has {rows} rows, over data.in_memory_max_rows {d.in_memory_max_rows}")
    return rows > d.in_memory_max_rows


def _scan_training(spec: JobSpec) -> StreamIndex:
    from biomed.models import backbone_tokenizer

    task, m, d = get_task(spec.task.name), spec.model, spec.data
    # A graph encoder (dmpnn) fits no vocabulary, so a streamed pass collects none for it.
    has_tokenizer = task.input_kind != "smiles" or graph_settings(m) is not None or backbone_tokenizer(backbone=m.backbone, path=model_folder(spec), input_kind=task.input_kind) is not None
    statistics = {"targets": TargetStatistics(task.target_kind, num_classes=len(spec.task.labels or []))}
    encoder = encoder_statistics(task.input_kind, has_backbone_tokenizer=has_tokenizer, numeric=d.numeric_columns, categorical=d.categorical_columns)
    if encoder is not None:
        statistics["encoder"] = encoder
    return scan(d.files_of("train_path"), columns=spec.columns(), statistics=statistics, **checks_for(spec))


def _load(spec: JobSpec, role: str, indexes: dict) -> Split | StreamedSplit:
    d = spec.data
    files = d.files_of(role)
    key = role.removesuffix("_path")
    if key in indexes:
        return StreamedSplit(StreamIndex.from_dict(indexes[key]))
    streamed = streams_training(spec) if role == "train_path" else total_rows(files) > d.in_memory_max_rows
    if not streamed:
        data = load_examples(files, columns=spec.columns(), **checks_for(spec))
        return Split(inputs=data.inputs, targets=data.targets, dropped=[x.as_dict() for x in data.dropped])
    if role == "train_path":
        if d.validation_path is None:
            raise ValueError(
                f"data.validation_path: the training data is streamed ({total_rows(files)} rows, data.in_memory_max_rows is {d.in_memory_max_rows}); "
                "give a validation file, since holding out a fraction needs the whole set in memory"
            )
        return StreamedSplit(_scan_training(spec))
    task = get_task(spec.task.name)
    statistics = {"targets": TargetStatistics(task.target_kind, num_classes=len(spec.task.labels or []))}
    return StreamedSplit(scan(files, columns=spec.columns(), statistics=statistics, **checks_for(spec)))


def _dropped(split) -> list[dict]:
    return split.index.dropped if isinstance(split, StreamedSplit) else split.dropped


def load_splits(spec: JobSpec, *, indexes: dict | None = None) -> Splits:
    """Load (or index, when streamed) the spec's data; validation is held out of in-memory
    training data unless a file is given. `indexes`: streamed splits' indexes from the driver."""
    d = spec.data
    task = get_task(spec.task.name)
    indexes = indexes or {}
    train_all = _load(spec, "train_path", indexes)
    report: dict = {"dropped": {"train": _dropped(train_all)}, "split": spec.split_method if d.validation_path is None else "file"}
    if d.validation_path is not None:
        train, validation = train_all, _load(spec, "validation_path", indexes)
        report["dropped"]["validation"] = _dropped(validation)
    else:
        data = Examples(inputs=train_all.inputs, targets=train_all.targets, source_rows=np.arange(len(train_all)), dropped=[])
        train_idx, val_idx = _hold_out(spec, data)
        train, validation = _subset(data, train_idx), _subset(data, val_idx)
    test = None
    if d.test_path is not None:
        test = _load(spec, "test_path", indexes)
        report["dropped"]["test"] = _dropped(test)
    if len(train) == 0 or len(validation) == 0:
        raise ValueError(f"empty split: {len(train)} training and {len(validation)} validation rows after dropping bad rows")
    report["rows"] = {"train": len(train), "validation": len(validation), "test": len(test) if test else 0}
    report["streamed"] = [role for role, split in (("train", train), ("validation", validation), ("test", test)) if isinstance(split, StreamedSplit)]
    if task.target_kind == "classification":
        labels = spec.task.labels
        counts = train.index.statistics["targets"]["class_counts"] if isinstance(train, StreamedSplit) else np.bincount(train.targets, minlength=len(labels))
        report["class_counts"] = {"train": {labels[k]: int(n) for k, n in enumerate(counts)}}
    elif task.target_kind == "survival":
        report["events"] = {"train": _events(train), "validation": _events(validation)}
    return Splits(train=train, validation=validation, test=test, report=report)


def _events(split) -> int:
    if isinstance(split, StreamedSplit):
        return int(split.index.statistics.get("targets", {}).get("events", 0))
    return int(split.targets[:, 1].sum())
