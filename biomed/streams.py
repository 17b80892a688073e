"""Data sets larger than memory: many files, read a unit (a Parquet row group, or a CSV file) at a time.

A data set is a sorted list of files. Its units are listed from file metadata without reading
rows, so a worker can be given a share of them and read only that. `scan` makes the one pass
that needs the whole split (input checks on every row, rows kept per unit, label counts, target
moments, an encoder's statistics), one unit in memory at a time; its result travels to the
workers as a plain dict (`StreamIndex.to_dict`) and is saved with the checkpoint.
"""

from __future__ import annotations

import glob
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, Protocol

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from biomed.data import MAX_REPORTED_ROWS, SUPPORTED_SUFFIXES, Columns, Examples, csv_parse_options, data_format, examples_from_table, read_table
from biomed.seqfiles import base_suffix, read_sequence_file, sequence_file_schema


def resolve_files(value: str | list[str]) -> list[str]:
    """The files named by a path, a glob or a list of either: absolute, each checked, in the
    list's order (a glob's matches sorted), each once.

    Raises ValueError naming the pattern that matched nothing, the missing file or the suffix.
    """
    patterns = [value] if isinstance(value, str) else list(value)
    if not patterns:
        raise ValueError("no data files given (an empty list)")
    files: list[str] = []
    for pattern in patterns:
        expanded = str(Path(pattern).expanduser())
        if glob.has_magic(expanded):
            matches = sorted(p for p in glob.glob(expanded, recursive=True) if Path(p).is_file())
            if not matches:
                raise ValueError(f"glob {pattern!r} matches no file (resolved to {str(Path(expanded).absolute())!r})")
        else:
            if not Path(expanded).is_file():
                raise ValueError(f"file not found: {pattern!r} (resolved to {str(Path(expanded).resolve())!r})")
            matches = [expanded]
        for match in matches:
            if data_format(match) is None:
                raise ValueError(f"unsupported file type {match!r}: expected one of {SUPPORTED_SUFFIXES} (CSV, TSV and sequence files may end in .gz)")
            files.append(str(Path(match).resolve()))
    return list(dict.fromkeys(files))


def _schema(path: str) -> pa.Schema:
    if data_format(path) == "sequence":
        return sequence_file_schema(path)
    try:
        if data_format(path) == "parquet":
            return pq.read_schema(path)
        # The streaming reader parses only the first block to learn the header and types.
        reader = pa_csv.open_csv(path, parse_options=csv_parse_options(path))
    except (pa.ArrowException, OSError) as error:
        raise ValueError(f"{path!r} is not a readable {base_suffix(path).lstrip('.').upper()} file ({type(error).__name__})") from None
    try:
        return reader.schema
    finally:
        reader.close()


def check_files(files: list[str], columns: list[str], *, role: str) -> None:
    """Every file has the columns, and all files of a set have the first file's schema.

    Parquet files must agree on column names and types; CSV files on column names (their types
    are inferred per file). The error names the first file that differs and how.
    """
    first = _schema(files[0])
    for path in files:
        schema = first if path == files[0] else _schema(path)
        missing = [c for c in columns if c not in schema.names]
        if missing:
            raise ValueError(f"{role}: column {missing[0]!r} is not a column of {path!r} (columns: {schema.names})")
        if path == files[0]:
            continue
        parquet = data_format(path) == "parquet"
        same = schema.equals(first) if parquet else schema.names == first.names
        if not same or parquet != (data_format(files[0]) == "parquet"):
            raise ValueError(f"{role}: {path!r} has a different schema from {files[0]!r} ({_difference(first, schema)})")


def _difference(first: pa.Schema, other: pa.Schema) -> str:
    for name in first.names:
        if name not in other.names:
            return f"no column {name!r}"
        if first.field(name).type != other.field(name).type:
            return f"column {name!r} is {other.field(name).type}, not {first.field(name).type}"
    extra = [n for n in other.names if n not in first.names]
    return f"extra columns {extra}" if extra else "column order differs"


@dataclass(frozen=True)
class Unit:
    """A piece of a data set read at once: a Parquet row group, or a whole CSV or sequence file."""

    file: int  # index into the data set's files
    row_group: int | None  # None: the whole (CSV or sequence) file
    first_row: int  # 0-based row of the file the unit starts at
    num_rows: int


def list_units(files: list[str]) -> list[Unit]:
    """The units of a data set, in file order, from Parquet metadata (CSV and sequence files
    are counted)."""
    units = []
    for index, path in enumerate(files):
        if data_format(path) == "parquet":
            meta = pq.ParquetFile(path).metadata
            start = 0
            for group in range(meta.num_row_groups):
                rows = meta.row_group(group).num_rows
                units.append(Unit(file=index, row_group=group, first_row=start, num_rows=rows))
                start += rows
        else:
            units.append(Unit(file=index, row_group=None, first_row=0, num_rows=_csv_rows(path)))
    return units


def _csv_rows(path: str) -> int:
    if data_format(path) == "sequence":
        return read_sequence_file(path).num_rows
    reader = pa_csv.open_csv(path, parse_options=csv_parse_options(path))
    try:
        return sum(batch.num_rows for batch in reader)
    finally:
        reader.close()


def read_unit(files: list[str], unit: Unit, columns: list[str]) -> pa.Table:
    """The unit's rows, the given columns only."""
    path = files[unit.file]
    if unit.row_group is not None:
        return pq.ParquetFile(path).read_row_group(unit.row_group, columns=columns)
    return read_table(path, columns=columns)


def total_rows(files: list[str]) -> int:
    return sum(u.num_rows for u in list_units(files))


class Statistics(Protocol):
    """Something fitted on a whole training split, one unit of examples at a time."""

    def update(self, examples: Examples) -> None: ...

    def result(self) -> dict: ...


@dataclass
class StreamIndex:
    """What one pass over a split learned: its files, units, rows kept per unit, drops, statistics."""

    files: list[str]
    units: list[Unit]
    kept_rows: list[int]
    dropped: list[dict] = field(default_factory=list)
    statistics: dict = field(default_factory=dict)

    @property
    def num_rows(self) -> int:
        return int(sum(self.kept_rows))

    def to_dict(self) -> dict:
        return {"files": self.files, "units": [asdict(u) for u in self.units], "kept_rows": self.kept_rows, "dropped": self.dropped, "statistics": self.statistics}

    @classmethod
    def from_dict(cls, raw: dict) -> StreamIndex:
        units = [Unit(**u) for u in raw["units"]]
        if len(units) != len(raw["kept_rows"]) or any(not 0 <= k <= u.num_rows for u, k in zip(units, raw["kept_rows"])):
            raise ValueError("stream index: kept_rows does not match its units")
        return cls(files=list(raw["files"]), units=units, kept_rows=[int(k) for k in raw["kept_rows"]], dropped=list(raw.get("dropped", [])), statistics=dict(raw.get("statistics", {})))


def unit_examples(files: list[str], unit: Unit, *, columns: Columns, **checks) -> Examples:
    """A unit's validated examples; errors and dropped rows name the file and its row numbers."""
    table = read_unit(files, unit, columns.all())
    return examples_from_table(table, source=files[unit.file], row_offset=unit.first_row, columns=columns, **checks)


def scan(files: list[str], *, columns: Columns, statistics: dict[str, Statistics] | None = None, **checks) -> StreamIndex:
    """One pass over a split, a unit at a time: every row checked (a bad one stops the pass, or is
    dropped and reported, per `on_invalid`), rows kept per unit counted, `statistics` updated."""
    units = list_units(files)
    kept, dropped = [], []
    for unit in units:
        examples = unit_examples(files, unit, columns=columns, **checks)
        kept.append(len(examples.targets))
        dropped.extend({"file": Path(files[unit.file]).name, **d.as_dict()} for d in examples.dropped)
        for stat in (statistics or {}).values():
            stat.update(examples)
    return StreamIndex(
        files=files, units=units, kept_rows=kept, dropped=_merge_dropped(dropped),
        statistics={name: stat.result() for name, stat in (statistics or {}).items()},
    )


def _merge_dropped(entries: list[dict]) -> list[dict]:
    """One entry per (file, reason): counts summed, the first reported rows kept."""
    merged: dict[tuple[str, str], dict] = {}
    for e in entries:
        m = merged.setdefault((e["file"], e["reason"]), {"file": e["file"], "reason": e["reason"], "count": 0, "first_rows": []})
        m["count"] += e["count"]
        m["first_rows"] = (m["first_rows"] + e["first_rows"])[:MAX_REPORTED_ROWS]
    return list(merged.values())


def iter_unit_examples(index: StreamIndex, unit_ids: list[int], *, columns: Columns, **checks) -> Iterator[tuple[int, Examples]]:
    """(unit id, examples) for the given units, each re-checked and matched against the scan."""
    for u in unit_ids:
        examples = unit_examples(index.files, index.units[u], columns=columns, **checks)
        if len(examples.targets) != index.kept_rows[u]:
            raise ValueError(
                f"{index.files[index.units[u].file]}: {len(examples.targets)} rows pass the checks in the unit at row "
                f"{index.units[u].first_row}, where the scan before training found {index.kept_rows[u]}: the file changed during the run"
            )
        yield u, examples
