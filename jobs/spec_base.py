"""The base of every spec section: unknown keys are errors, values are frozen once validated."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from jobs.registry import NAME_PATTERN


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _RunSpec(_Spec):
    """What every runnable spec (fine-tuning, pretraining) has: a registry name and a storage path."""

    name: str = Field(description="Name in the registry and prefix of the run name: lower-case letters, digits, '-', '_' or '.'.")
    storage_path: str = Field(default="runs", description="Where runs and the registry live: a local or shared (NFS) folder, visible to every node.")

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
