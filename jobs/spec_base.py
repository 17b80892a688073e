"""The base of every spec section: unknown keys are errors, values are frozen once validated."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from jobs.registry import NAME_PATTERN


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _RunSpec(_Spec):
    """What every runnable spec (fine-tuning, pretraining) has: a registry name and a storage path."""

    name: str = Field(description="Name in the registry and prefix of the run name: lower-case letters, digits, '-', '_' or '.'.")
    storage_path: str = Field(default="runs", description="Where runs and the registry live: a local folder on one node; on a multi-node cluster an absolute path on a filesystem every node mounts (NFS, a shared volume), which the run checks before it starts.")
    # The path as written, before it was made absolute: a relative one is refused on several nodes.
    _storage_given: str | None = PrivateAttr(default=None)

    @model_validator(mode="wrap")
    @classmethod
    def _remember_storage(cls, data, handler):
        spec = handler(data)
        if isinstance(data, dict):
            spec._storage_given = str(data.get("storage_path", "runs"))
        return spec

    @property
    def storage_given(self) -> str:
        """storage_path as the spec wrote it (relative paths not yet resolved)."""
        return self._storage_given or self.storage_path

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
            raise ValueError(f"storage_path {value!r}: give a local or shared filesystem folder, not a URI")
        return _absolute(value)


def _absolute(path: str) -> str:
    return str(Path(path).expanduser().resolve())
