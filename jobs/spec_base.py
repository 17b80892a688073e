"""The base of every spec section: unknown keys are errors, values are frozen once validated."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _absolute(path: str) -> str:
    return str(Path(path).expanduser().resolve())
