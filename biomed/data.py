"""Reading labelled tables with pyarrow, reporting bad rows, splitting and fingerprinting."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from sklearn.model_selection import train_test_split

SUPPORTED_SUFFIXES = (".parquet", ".pq", ".csv", ".tsv")
MAX_REPORTED_ROWS = 10


def read_table(path: str | Path, columns: list[str] | None = None) -> pa.Table:
    """Read a Parquet or CSV/TSV file (by suffix) into an Arrow table."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return pq.read_table(path, columns=columns)
    if suffix in (".csv", ".tsv"):
        parse = pa_csv.ParseOptions(delimiter="\t" if suffix == ".tsv" else ",")
        convert = pa_csv.ConvertOptions(include_columns=columns)
        return pa_csv.read_csv(path, parse_options=parse, convert_options=convert)
    raise ValueError(f"unsupported data file {str(path)!r}: expected one of {SUPPORTED_SUFFIXES}")


def column_names(path: str | Path) -> list[str]:
    """Column names of a data file without reading its rows (Parquet) or all of them (CSV)."""
    path = Path(path)
    if path.suffix.lower() in (".parquet", ".pq"):
        return list(pq.read_schema(path).names)
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    # A streaming reader parses only the first block to learn the schema.
    reader = pa_csv.open_csv(path, parse_options=pa_csv.ParseOptions(delimiter=delimiter))
    try:
        return list(reader.schema.names)
    finally:
        reader.close()


@dataclass
class DroppedRows:
    """Rows left out of a data set and why: a count and the first row numbers (0-based)."""

    reason: str
    count: int = 0
    first_rows: list[int] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"reason": self.reason, "count": self.count, "first_rows": self.first_rows}


@dataclass
class LabelledText:
    texts: list[str]
    label_ids: np.ndarray
    source_rows: np.ndarray
    dropped: list[DroppedRows]


def _rows(mask: np.ndarray) -> tuple[int, list[int]]:
    idx = np.flatnonzero(mask)
    return int(idx.size), [int(i) for i in idx[:MAX_REPORTED_ROWS]]


def load_labelled_text(
    path: str | Path, *, text_column: str, label_column: str, labels: list[str]
) -> LabelledText:
    """Load text and label columns; rows with a missing text or label are reported, not hidden.

    A label outside `labels` is an error, not a dropped row: it means the spec's label set
    does not describe the data.
    """
    table = read_table(path, columns=[text_column, label_column])
    texts = table.column(text_column).to_pylist()
    raw_labels = table.column(label_column).to_pylist()
    missing_text = np.array([t is None or not str(t).strip() for t in texts], dtype=bool)
    missing_label = np.array([lab is None or str(lab).strip() == "" for lab in raw_labels], dtype=bool)
    label_index = {name: i for i, name in enumerate(labels)}
    unknown = np.array(
        [not missing_label[i] and str(lab) not in label_index for i, lab in enumerate(raw_labels)],
        dtype=bool,
    )
    if unknown.any():
        count, rows = _rows(unknown)
        values = sorted({str(raw_labels[i]) for i in np.flatnonzero(unknown)})[:MAX_REPORTED_ROWS]
        raise ValueError(
            f"{path}: {count} rows have a {label_column!r} value outside the task's labels "
            f"(values {values}, first rows {rows})"
        )
    dropped = []
    for reason, mask in (("missing text", missing_text), ("missing label", missing_label & ~missing_text)):
        if mask.any():
            count, rows = _rows(mask)
            dropped.append(DroppedRows(reason=f"{reason} ({text_column if 'text' in reason else label_column})", count=count, first_rows=rows))
    keep = ~(missing_text | missing_label)
    kept_rows = np.flatnonzero(keep)
    return LabelledText(
        texts=[str(texts[i]) for i in kept_rows],
        label_ids=np.array([label_index[str(raw_labels[i])] for i in kept_rows], dtype=np.int64),
        source_rows=kept_rows,
        dropped=dropped,
    )


def distinct_labels(path: str | Path, label_column: str) -> list[str]:
    """Sorted distinct non-empty values of the label column."""
    values = read_table(path, columns=[label_column]).column(label_column).to_pylist()
    return sorted({str(v) for v in values if v is not None and str(v).strip()})


def stratified_split(
    label_ids: np.ndarray, *, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of (train, validation), stratified by label; deterministic for a seed.

    Classes with a single example cannot be stratified; they stay in the training part.
    """
    indices = np.arange(label_ids.size)
    counts = np.bincount(label_ids)
    singletons = np.isin(label_ids, np.flatnonzero(counts == 1))
    splittable = indices[~singletons]
    train_idx, val_idx = train_test_split(
        splittable, test_size=fraction, random_state=seed, stratify=label_ids[splittable]
    )
    return np.sort(np.concatenate([train_idx, indices[singletons]])), np.sort(val_idx)


def fingerprint_files(paths: list[str | Path]) -> str:
    """sha256 over the bytes of the given files, in order; names are not part of it."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()
