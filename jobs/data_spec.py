"""The spec's `data:` section: where the examples are, which columns they use, and when a split
is streamed instead of held in memory."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from biomed.streams import resolve_files
from jobs.image_spec import ImageSpec
from jobs.spec_base import _Spec

ROLES = ("train_path", "validation_path", "test_path")


class DataSpec(_Spec):
    train_path: str | list[str] = Field(
        description="Training data: a Parquet (.parquet) or CSV/TSV file, a glob ('data/train/*.parquet'), or a list of files or globs; several files are one data set with one schema. Relative paths are resolved against the working directory."
    )
    validation_path: str | list[str] | None = Field(
        default=None,
        description="Validation data: a file, a glob or a list. Omitted: a `validation_fraction` of the training data is held out (in-memory training data only).",
    )
    test_path: str | list[str] | None = Field(
        default=None, description="Held-out test data (a file, a glob or a list), scored once with the selected checkpoint after training."
    )
    validation_fraction: float = Field(
        default=0.15, gt=0.0, lt=0.5, description="Share of the training file held out for validation when no validation_path is given."
    )
    split_seed: int = Field(default=0, ge=0, description="Seed of the stratified train/validation split.")
    text_column: str = Field(default="text", description="Column holding the input of sequence tasks: free text, a DNA or protein sequence, or a SMILES string.")
    images: ImageSpec = Field(default_factory=ImageSpec, description="Image tasks: the column of image files and how they are decoded and checked.")
    label_column: str = Field(default="label", description="Column holding the target of classification (a label) and regression (a number) tasks.")
    numeric_columns: list[str] = Field(default_factory=list, description="Tabular and survival tasks: numeric feature columns, standardised with training-split statistics (missing values get the training mean).")
    categorical_columns: list[str] = Field(default_factory=list, description="Tabular and survival tasks: categorical feature columns, one-hot over the categories seen in training.")
    time_column: str | None = Field(default=None, description="Survival tasks: time to the event or to censoring (non-negative).")
    event_column: str | None = Field(default=None, description="Survival tasks: 1 (or true) if the event was observed, 0 if the record is censored.")
    split: Literal["stratified", "random", "scaffold"] | None = Field(
        default=None,
        description="How the validation part is held out of the training file: stratified by label (by event for survival), random, or scaffold (molecules: no Bemis–Murcko scaffold in both parts). Omitted: stratified for classification and survival, random for regression.",
    )
    invalid_inputs: Literal["error", "drop"] = Field(
        default="error",
        description="Inputs that fail the family's check (DNA/protein alphabet, SMILES that RDKit cannot parse, feature types): error names the file and rows and stops; drop leaves them out and reports their files and row numbers in the summary. Streamed data is checked the same way, every row, in the stream.",
    )
    canonicalize_smiles: bool = Field(default=True, description="Molecule tasks: rewrite each SMILES in RDKit's canonical form before tokenizing (training and serving alike).")
    streaming: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="Whether training data is streamed (each worker reads only its share, a Parquet row group or CSV file at a time, and tokenizes on the fly) or held in memory: auto streams it when it has more than `in_memory_max_rows` rows.",
    )
    in_memory_max_rows: int = Field(
        default=200_000, ge=1,
        description="Largest split (rows, before checks) held in memory; larger validation and test sets are streamed too, and so is training data under streaming: auto.",
    )
    shuffle_buffer_rows: int = Field(
        default=10_000, ge=1,
        description="Streamed training: rows per shuffle window. Each epoch shuffles the units (row groups) over the workers, then the rows inside windows of at least this many; memory per worker grows with this, not with the data.",
    )
    baseline_max_rows: int = Field(
        default=100_000, ge=1,
        description="Streamed training: the classical baseline is fitted on a seeded sample of whole units of at most about this many training rows (it trains in memory).",
    )

    @field_validator(*ROLES)
    @classmethod
    def _existing_files(cls, value: str | list[str] | None) -> str | list[str] | None:
        if value is None:
            return None
        files = resolve_files(value)
        # A single plain path stays a string (the spec, and so its run name, reads as written).
        if isinstance(value, str) and files == [str(Path(value).expanduser().resolve())]:
            return files[0]
        return files

    @model_validator(mode="after")
    def _disjoint(self) -> DataSpec:
        seen: dict[str, str] = {}
        for role in ROLES:
            for path in self.files_of(role):
                if path in seen and seen[path] != role:
                    raise ValueError(f"{path!r} is in both data.{seen[path]} and data.{role}")
                seen[path] = role
        return self

    def files_of(self, role: str) -> list[str]:
        """The resolved files of 'train_path', 'validation_path' or 'test_path' (empty: none)."""
        value = getattr(self, role)
        if value is None:
            return []
        return [value] if isinstance(value, str) else list(value)

    def files(self) -> list[str]:
        return [p for role in ROLES for p in self.files_of(role)]
