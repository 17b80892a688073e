"""The base of every runnable spec: unknown keys are errors, values are frozen once validated,
and validators do no I/O (paths are made absolute by jobs/resolve.py)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator

from biomed.spec_sections import SpecSection as _Spec
from jobs.registry import NAME_PATTERN
from jobs.run_storage import URI_SCHEMES, display, is_uri


class _RunSpec(_Spec):
    """What every runnable spec (fine-tuning, pretraining) has: a registry name and a storage path."""

    name: str = Field(description="Name in the registry and prefix of the run name: lower-case letters, digits, '-', '_' or '.'.")
    storage_path: str = Field(
        default="runs",
        description="Where runs (and, unless registry_storage_path says otherwise, the registry) live: a local folder on one node; on a multi-node cluster an absolute path on a filesystem every node mounts (NFS, a shared volume), which the run checks before it starts. Fine-tuning runs may also use an object store that Ray Train supports, s3://BUCKET/PREFIX or gs://BUCKET/PREFIX (pyarrow query options such as ?endpoint_override=HOST:PORT pass through), with registry_storage_path set.",
    )
    registry_storage_path: str | None = Field(
        default=None,
        description="The folder whose registry/ holds the registered models, the --storage that `biomed models` and `biomed serve deploy` take; default: storage_path. Required when storage_path is a URI: Serve replicas read the registry as files, so it stays on a filesystem every node sees.",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_PATTERN.fullmatch(value):
            raise ValueError(f"name {value!r} must be 1-63 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit")
        return value

    @field_validator("storage_path")
    @classmethod
    def _storage(cls, value: str) -> str:
        if "://" in value:
            scheme = value.split("://", 1)[0]
            if scheme not in URI_SCHEMES:
                raise ValueError(f"storage_path scheme {scheme!r}: give a folder, or a URI of {', '.join(s + '://' for s in URI_SCHEMES)}")
        return value

    @field_validator("registry_storage_path")
    @classmethod
    def _registry_storage(cls, value: str | None) -> str | None:
        if value is not None and "://" in value:
            raise ValueError(f"registry_storage_path {display(value)!r}: the registry is read as files, give a folder every node sees, not a URI")
        return value

    @model_validator(mode="after")
    def _registry_needs_a_folder(self):
        if is_uri(self.storage_path) and self.registry_storage_path is None:
            raise ValueError(f"storage_path {display(self.storage_path)!r} is an object store: set registry_storage_path to a folder every node sees, for the registry")
        return self

    @property
    def registry_storage(self) -> str:
        """The folder holding this spec's registry (registry_storage_path, else storage_path)."""
        return self.registry_storage_path or self.storage_path


def absolute(path: str) -> str:
    """A folder as an absolute path (a URI as it is): resolution's step, never a validator's."""
    if is_uri(path):
        return path
    return str(Path(path).expanduser().resolve())
