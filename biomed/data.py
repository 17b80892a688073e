"""Reading labelled tables with pyarrow, reporting bad rows, splitting and fingerprinting."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from biomed.inputs import InvalidInputs
from biomed.seqfiles import TEXT_SUFFIXES, base_suffix, read_sequence_file

PARQUET_SUFFIXES = (".parquet", ".pq")
# CSV/TSV and the sequence files may be gzipped (`.csv.gz`); Parquet compresses inside.
SUPPORTED_SUFFIXES = (*PARQUET_SUFFIXES, ".csv", ".tsv", *TEXT_SUFFIXES)
MAX_REPORTED_ROWS = 10


def data_format(path: str | Path) -> str | None:
    """'parquet', 'csv' (CSV or TSV, maybe gzipped), 'sequence' (biomed.seqfiles) or None."""
    suffix, gzipped = base_suffix(path), str(path).lower().endswith(".gz")
    if suffix in PARQUET_SUFFIXES:
        return None if gzipped else "parquet"
    if suffix in (".csv", ".tsv"):
        return "csv"
    return "sequence" if suffix in TEXT_SUFFIXES else None


def read_table(path: str | Path, columns: list[str] | None = None) -> pa.Table:
    """Read a Parquet, CSV/TSV or sequence file (by suffix; biomed.seqfiles) into an Arrow table."""
    path = Path(path)
    kind = data_format(path)
    if kind == "parquet":
        return pq.read_table(path, columns=columns)
    if kind == "sequence":
        return read_sequence_file(path, columns)
    if kind == "csv":
        convert = pa_csv.ConvertOptions(include_columns=columns)
        return pa_csv.read_csv(path, parse_options=csv_parse_options(path), convert_options=convert)
    raise ValueError(f"unsupported data file {str(path)!r}: expected one of {SUPPORTED_SUFFIXES}")


def csv_parse_options(path: str | Path) -> pa_csv.ParseOptions:
    """How a CSV or TSV file is split into columns (by its suffix)."""
    return pa_csv.ParseOptions(delimiter="\t" if base_suffix(path) == ".tsv" else ",")


@dataclass
class DroppedRows:
    """Rows left out of a data set and why: a count and the first row numbers (0-based)."""

    reason: str
    count: int = 0
    first_rows: list[int] = field(default_factory=list)
    file: str | None = None  # named when a data set has several files

    def as_dict(self) -> dict:
        named = {"file": self.file} if self.file else {}
        return {**named, "reason": self.reason, "count": self.count, "first_rows": self.first_rows}


@dataclass(frozen=True)
class Columns:
    """Which columns hold the input and the target of a task."""

    input: str | None = None  # sequence tasks: text, DNA, protein or SMILES
    label: str | None = None  # classification labels or regression values
    numeric: tuple[str, ...] = ()  # tabular tasks
    categorical: tuple[str, ...] = ()
    time: str | None = None  # survival
    event: str | None = None

    def all(self) -> list[str]:
        named = [self.input, self.label, *self.numeric, *self.categorical, self.time, self.event]
        return list(dict.fromkeys(c for c in named if c is not None))


@dataclass
class Examples:
    """Validated inputs (strings or feature dicts) and targets: class ids (N,), values (N,)
    or (time, event) pairs (N, 2); `source_rows` are the 0-based rows of the file kept."""

    inputs: list
    targets: np.ndarray
    source_rows: np.ndarray
    dropped: list[DroppedRows]


def _rows(mask: np.ndarray) -> tuple[int, list[int]]:
    idx = np.flatnonzero(mask)
    return int(idx.size), [int(i) for i in idx[:MAX_REPORTED_ROWS]]


def _blank(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or (isinstance(value, str) and not value.strip())


def _targets(path, table: pa.Table, columns: Columns, *, target, labels: list[str] | None, keep: np.ndarray, row_offset: int = 0) -> np.ndarray:
    """Targets of the kept rows; a value the task cannot use is an error naming its rows."""

    def fail(column: str, what: str, bad: list[int], values: list) -> None:
        shown = sorted({str(values[i]) for i in bad})[:MAX_REPORTED_ROWS]
        first = [i + row_offset for i in bad[:MAX_REPORTED_ROWS]]
        raise ValueError(f"{path}: {len(bad)} rows have a {column!r} value that is {what} (values {shown}, first rows {first})")

    return target.parse(table, columns, np.flatnonzero(keep), labels=labels, fail=fail)


def load_examples(
    path: str | Path | list, *, columns: Columns, target, labels: list[str] | None, validator, on_invalid: str = "error"
) -> Examples:
    """Read, check and type one data file, or several (concatenated in the order given).

    Rows with a missing input or target are dropped and reported. A target the task cannot use
    (unknown label, non-numeric value, bad event flag) is an error: the spec does not describe
    the data. Inputs that fail the family's validator (alphabet, SMILES, feature types) are an
    error naming the rows, or with on_invalid="drop" are dropped and reported, never silently.
    """
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    # A validator that reads files named in the table (images) reads them beside the data file.
    for_source = getattr(validator, "for_source", lambda p: validator)
    parts = [
        examples_from_table(read_table(p, columns=columns.all()), source=p, columns=columns, target=target, labels=labels, validator=for_source(p), on_invalid=on_invalid)
        for p in paths
    ]
    if len(parts) == 1:
        return parts[0]
    for p, part in zip(paths, parts):
        for d in part.dropped:
            d.file = Path(p).name
    return Examples(
        inputs=[x for part in parts for x in part.inputs],
        targets=np.concatenate([part.targets for part in parts]),
        source_rows=np.concatenate([part.source_rows for part in parts]),
        dropped=[d for part in parts for d in part.dropped],
    )


def examples_from_table(
    table: pa.Table, *, source, columns: Columns, target, labels: list[str] | None, validator, on_invalid: str = "error", row_offset: int = 0
) -> Examples:
    """Check and type the rows of a table read from `source`, whose first row is file row `row_offset`.

    Errors and dropped rows name `source` and file row numbers (0-based).
    """
    n = table.num_rows
    if columns.input is not None:
        inputs = table.column(columns.input).to_pylist()
        missing_input = np.array([_blank(v) for v in inputs], dtype=bool)
    else:
        features = [*columns.numeric, *columns.categorical]
        inputs = table.select(features).to_pylist()
        # A tabular row is dropped only when every feature is missing; single gaps are imputed.
        missing_input = np.array([all(_blank(r[f]) for f in features) for r in inputs], dtype=bool)
    target_columns = [c for c in (columns.label, columns.time, columns.event) if c is not None]
    missing_target = np.zeros(n, dtype=bool)
    for column in target_columns:
        missing_target |= np.array([_blank(v) for v in table.column(column).to_pylist()], dtype=bool)
    dropped = []
    for reason, mask in ((f"missing input ({columns.input or 'all features'})", missing_input), (f"missing target ({', '.join(target_columns)})", missing_target & ~missing_input)):
        if mask.any():
            count, rows = _rows(mask)
            dropped.append(DroppedRows(reason=reason, count=count, first_rows=[r + row_offset for r in rows]))
    keep = ~(missing_input | missing_target)
    targets = _targets(source, table, columns, target=target, labels=labels, keep=keep, row_offset=row_offset)
    kept = np.flatnonzero(keep)
    raw_inputs = [inputs[i] for i in kept]
    try:
        clean = validator.validate(raw_inputs)
    except InvalidInputs as error:
        # The validator lists the first few; dropping needs every bad row.
        problems = error.problems if on_invalid != "drop" or error.total == len(error.problems) else _all_problems(validator, raw_inputs)
        file_rows = [(int(kept[i]) + row_offset, message) for i, message in problems]
        if on_invalid != "drop":
            shown = "; ".join(f"row {r}: {m}" for r, m in file_rows[:MAX_REPORTED_ROWS])
            raise ValueError(f"{source}: {error.total} invalid inputs in column {columns.input or 'features'!r}: {shown}") from None
        drop = np.zeros(kept.size, dtype=bool)
        drop[[i for i, _ in problems]] = True
        dropped.append(DroppedRows(reason=f"invalid input ({problems[0][1]})", count=int(drop.sum()), first_rows=[r for r, _ in file_rows[:MAX_REPORTED_ROWS]]))
        kept, targets = kept[~drop], targets[~drop]
        clean = validator.validate([inputs[i] for i in kept])
    return Examples(inputs=clean, targets=targets, source_rows=kept + row_offset, dropped=dropped)


def _all_problems(validator, values: list) -> list[tuple[int, str]]:
    problems = []
    for i, value in enumerate(values):
        try:
            validator.validate([value])
        except InvalidInputs as error:
            problems.append((i, error.problems[0][1]))
    return problems


def distinct_labels(path: str | Path | list, label_column: str) -> list[str]:
    """Sorted distinct non-empty values of the label column, over one file or several (a row
    group or a file at a time, so a data set larger than memory is fine)."""
    labels: set[str] = set()
    for p in [path] if isinstance(path, (str, Path)) else path:
        if data_format(p) == "parquet":
            parquet = pq.ParquetFile(p)
            tables = (parquet.read_row_group(g, columns=[label_column]) for g in range(parquet.metadata.num_row_groups))
        else:
            tables = [read_table(p, columns=[label_column])]
        for table in tables:
            labels.update(str(v) for v in table.column(label_column).to_pylist() if v is not None and str(v).strip())
    return sorted(labels)


def stratified_split(
    label_ids: np.ndarray, *, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of (train, validation), stratified by label; deterministic for a seed.

    Classes with a single example cannot be stratified; they stay in the training part.
    """
    from sklearn.model_selection import train_test_split  # a second of imports, paid only here

    indices = np.arange(label_ids.size)
    counts = np.bincount(label_ids)
    singletons = np.isin(label_ids, np.flatnonzero(counts == 1))
    splittable = indices[~singletons]
    train_idx, val_idx = train_test_split(
        splittable, test_size=fraction, random_state=seed, stratify=label_ids[splittable]
    )
    return np.sort(np.concatenate([train_idx, indices[singletons]])), np.sort(val_idx)


def random_split(num_rows: int, *, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of (train, validation), shuffled with a seed; for targets that cannot be stratified."""
    from sklearn.model_selection import train_test_split

    train_idx, val_idx = train_test_split(np.arange(num_rows), test_size=fraction, random_state=seed)
    return np.sort(train_idx), np.sort(val_idx)


def fingerprint_files(paths: list[str | Path]) -> str:
    """sha256 over the bytes of the given files, in order; names are not part of it."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()
