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
from biomed.streams import StreamIndex, scan, total_rows
from jobs.resolve import ResolvedJob
from jobs.spec import JobSpec, SpecError


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
    return spec.family.validator(spec)


def _hold_out(spec: JobSpec, data: Examples) -> tuple[np.ndarray, np.ndarray]:
    d = spec.data
    method = spec.split_method
    held = spec.family.hold_out(method, data.inputs, d.validation_fraction)
    if held is not None:
        return held
    strata = spec.task_entry.target.strata(data.targets) if method == "stratified" else None
    if strata is None:
        return random_split(len(data.inputs), fraction=d.validation_fraction, seed=d.split_seed)
    return stratified_split(strata, fraction=d.validation_fraction, seed=d.split_seed)


def checks_for(spec: JobSpec) -> dict:
    """The keyword arguments of `biomed.data.examples_from_table` for this spec."""
    return {
        "target": spec.task_entry.target,
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


def _target_statistics(spec: JobSpec) -> dict:
    return {"targets": spec.task_entry.target.statistics(len(spec.task.labels or []))}


def _scan_training(job: ResolvedJob) -> StreamIndex:
    spec = job.spec
    statistics = _target_statistics(spec)
    encoder = spec.family.encoder_statistics(job)
    if encoder is not None:
        statistics["encoder"] = encoder
    return scan(spec.data.files_of("train_path"), columns=spec.columns(), statistics=statistics, **checks_for(spec))


def _load(job: ResolvedJob, role: str, indexes: dict) -> Split | StreamedSplit:
    spec = job.spec
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
        return StreamedSplit(_scan_training(job))
    return StreamedSplit(scan(files, columns=spec.columns(), statistics=_target_statistics(spec), **checks_for(spec)))


def _dropped(split) -> list[dict]:
    return split.index.dropped if isinstance(split, StreamedSplit) else split.dropped


def load_splits(job: ResolvedJob, *, indexes: dict | None = None) -> Splits:
    """Load (or index, when streamed) the job's data; validation is held out of in-memory
    training data unless a file is given. `indexes`: streamed splits' indexes from the driver."""
    spec = job.spec
    d = spec.data
    indexes = indexes or {}
    train_all = _load(job, "train_path", indexes)
    report: dict = {"dropped": {"train": _dropped(train_all)}, "split": spec.split_method if d.validation_path is None else "file"}
    if d.validation_path is not None:
        train, validation = train_all, _load(job, "validation_path", indexes)
        report["dropped"]["validation"] = _dropped(validation)
    else:
        data = Examples(inputs=train_all.inputs, targets=train_all.targets, source_rows=np.arange(len(train_all)), dropped=[])
        train_idx, val_idx = _hold_out(spec, data)
        train, validation = _subset(data, train_idx), _subset(data, val_idx)
    test = None
    if d.test_path is not None:
        test = _load(job, "test_path", indexes)
        report["dropped"]["test"] = _dropped(test)
    if len(train) == 0 or len(validation) == 0:
        raise ValueError(f"empty split: {len(train)} training and {len(validation)} validation rows after dropping bad rows")
    report["rows"] = {"train": len(train), "validation": len(validation), "test": len(test) if test else 0}
    report["streamed"] = [role for role, split in (("train", train), ("validation", validation), ("test", test)) if isinstance(split, StreamedSplit)]
    report.update(_target_report(spec, train, validation))
    return Splits(train=train, validation=validation, test=test, report=report)


def _target_report(spec: JobSpec, train, validation) -> dict:
    """What the summary says of the targets: class counts of the training split (labels), or
    events per split (survival), from the same statistics a streamed pass collects."""
    labels = spec.task.labels
    parts = {"train": train, "validation": validation}
    summaries = {role: _target_summary(spec, split) for role, split in parts.items()}
    if "class_counts" in summaries["train"]:
        return {"class_counts": {"train": {labels[k]: int(n) for k, n in enumerate(summaries["train"]["class_counts"])}}}
    if "events" in summaries["train"]:
        return {"events": {role: summary["events"] for role, summary in summaries.items()}}
    return {}


def _target_summary(spec: JobSpec, split) -> dict:
    if isinstance(split, StreamedSplit):
        return split.index.statistics.get("targets", {})
    stats = spec.task_entry.target.statistics(len(spec.task.labels or []))
    stats.update(Examples(inputs=split.inputs, targets=split.targets, source_rows=np.arange(len(split)), dropped=[]))
    return stats.result()
