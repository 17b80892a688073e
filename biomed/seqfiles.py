"""Unlabelled sequence files as one-column tables: plain text, FASTA and .smi, gzip allowed.

A corpus for pretraining often comes as the files sequence tools write rather than as tables:
one text or SMILES per line, or FASTA records. Each reads into an Arrow table with one column,
`SEQUENCE_COLUMN`, so the rest of the data path (units, checks, streaming) treats it like a
one-column CSV. A whole file is one unit: split a corpus larger than memory into many files,
or write Parquet with row groups (`biomed data moses` does).

- `.txt`: one example per non-blank line.
- `.smi`: the first whitespace-separated field of each non-blank line (the SMILES; a name may
  follow); a first line reading `smiles` (any case) is a header and skipped.
- `.fasta`, `.fa`, `.faa`, `.fna`: one example per record, its sequence lines joined.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Iterator

import pyarrow as pa

SEQUENCE_COLUMN = "sequence"
TEXT_SUFFIXES = (".txt", ".smi", ".fasta", ".fa", ".faa", ".fna")


def base_suffix(path: str | Path) -> str:
    """A file's type suffix with a trailing `.gz` set aside: 'a.smi.gz' → '.smi'."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def is_sequence_file(path: str | Path) -> bool:
    return base_suffix(path) in TEXT_SUFFIXES


def _lines(path: Path) -> Iterator[str]:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for line in f:
                yield line.rstrip("\r\n")
    except (OSError, UnicodeDecodeError, EOFError) as error:
        raise ValueError(f"{str(path)!r} is not a readable {base_suffix(path).lstrip('.').upper()} file ({type(error).__name__})") from None


def _records(path: Path) -> Iterator[str]:
    kind = base_suffix(path)
    if kind in (".txt", ".smi"):
        for number, line in enumerate(_lines(path)):
            if not line.strip():
                continue
            value = line.split()[0] if kind == ".smi" else line.strip()
            if kind == ".smi" and number == 0 and value.lower() == "smiles":
                continue
            yield value
        return
    parts: list[str] | None = None
    for line in _lines(path):
        if line.startswith(">"):
            if parts is not None:
                yield "".join(parts)
            parts = []
        elif line.strip():
            if parts is None:
                raise ValueError(f"{str(path)!r} is not a FASTA file: sequence data before the first '>' header")
            parts.append(line.strip())
    if parts is not None:
        yield "".join(parts)


def read_sequence_file(path: str | Path, columns: list[str] | None = None) -> pa.Table:
    """The file's examples as a table with one string column, `SEQUENCE_COLUMN`."""
    wanted = [c for c in (columns or []) if c != SEQUENCE_COLUMN]
    if wanted:
        raise ValueError(f"{str(path)!r} has one column, {SEQUENCE_COLUMN!r}; there is no column {wanted[0]!r}")
    return pa.table({SEQUENCE_COLUMN: pa.array(list(_records(Path(path))), type=pa.string())})


def sequence_file_schema(path: str | Path) -> pa.Schema:
    """The schema every sequence file has, after checking the file opens and decodes."""
    for _ in zip(range(1), _lines(Path(path))):
        pass
    return pa.schema([(SEQUENCE_COLUMN, pa.string())])
