"""Where a run's files live: a folder, or an object-store URI that Ray Train supports.

A fine-tuning run's storage_path may be `s3://bucket/prefix` or `gs://bucket/prefix` (pyarrow's
query options such as `?endpoint_override=HOST:PORT&scheme=http` pass through to pyarrow, as in
Ray Train). Ray Train uploads the checkpoints itself; this module writes and reads the few other
files of a run (metrics.csv, learning_curve.png) the same way, through pyarrow.fs, and fetches a
selected checkpoint to a local folder for scoring and registration. The registry never lives in
an object store: it is a folder every node and every Serve replica reads.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

# The object stores Ray Train's storage_path accepts through pyarrow.fs.
URI_SCHEMES = ("s3", "gs", "gcs")


def is_uri(location: str) -> bool:
    return "://" in str(location)


def run_location(storage_path: str, name: str) -> str:
    """The run folder `name` under `storage_path` (a URI keeps its query options at the end)."""
    if not is_uri(storage_path):
        return str(Path(storage_path) / name)
    base, _, query = storage_path.partition("?")
    return f"{base.rstrip('/')}/{name}" + (f"?{query}" if query else "")


def _fs(location: str):
    import pyarrow.fs

    return pyarrow.fs.FileSystem.from_uri(location)


def write_file(location: str, filename: str, data: bytes) -> None:
    """Write `filename` in the run folder whole: locally through a temporary file and a rename,
    so a reader never sees half a file; an object-store put is whole by itself."""
    if not is_uri(location):
        folder = Path(location)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{filename}.tmp"
        tmp.write_bytes(data)
        tmp.replace(folder / filename)
        return
    fs, path = _fs(location)
    with fs.open_output_stream(f"{path}/{filename}") as out:
        out.write(data)


def read_file(location: str, filename: str) -> bytes | None:
    """`filename` of the run folder, or None when it is not there."""
    if not is_uri(location):
        target = Path(location) / filename
        return target.read_bytes() if target.is_file() else None
    import pyarrow.fs

    fs, path = _fs(location)
    if fs.get_file_info(f"{path}/{filename}").type != pyarrow.fs.FileType.File:
        return None
    with fs.open_input_stream(f"{path}/{filename}") as stream:
        return stream.read()


def display(location: str) -> str:
    """The location without its query options (which may name endpoints), for logs and summaries."""
    return str(location).partition("?")[0]


@contextlib.contextmanager
def local_checkpoint(checkpoint) -> Iterator[Path]:
    """A Ray Train checkpoint as a local folder: itself when it is one, else downloaded into a
    temporary folder that is removed afterwards."""
    if not is_uri(checkpoint_location(checkpoint)):
        yield Path(checkpoint.path)
        return
    tmp = tempfile.mkdtemp(prefix="biomed-ckpt-")
    try:
        yield Path(checkpoint.to_directory(tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def checkpoint_location(checkpoint) -> str:
    """A Ray Train checkpoint's folder, or its URI (scheme://bucket/path) in an object store."""
    import pyarrow.fs

    return checkpoint.path if isinstance(checkpoint.filesystem, pyarrow.fs.LocalFileSystem) else f"{checkpoint.filesystem.type_name}://{checkpoint.path}"
