"""The generic parts of a job spec's `data:`, `model:` and `training:` sections.

A task family's own sections (biomed/families/<family>/) extend these with its fields, so a DNA
spec takes `model.kmer_size` and a tabular one `data.numeric_columns`, and neither takes the
other's. They are pure pydantic models: frozen, unknown keys refused, every field described, and
no I/O in a validator. Files, folders, labels and the defaults that depend on a family are
resolved once, on the driver, by jobs/resolve.py.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ROLES = ("train_path", "validation_path", "test_path")


class SpecSection(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSection(SpecSection):
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
    label_column: str = Field(default="label", description="Column holding the target of classification (a label) and regression (a number) tasks.")
    split: Literal["stratified", "random", "scaffold"] | None = Field(
        default=None,
        description="How the validation part is held out of the training file: stratified by label (by event for survival), random, or scaffold (molecules: no Bemis–Murcko scaffold in both parts). Omitted: stratified for classification and survival, random for regression.",
    )
    invalid_inputs: Literal["error", "drop"] = Field(
        default="error",
        description="Inputs that fail the family's check (DNA/protein alphabet, SMILES that RDKit cannot parse, feature types): error names the file and rows and stops; drop leaves them out and reports their files and row numbers in the summary. Streamed data is checked the same way, every row, in the stream.",
    )
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

    def files_of(self, role: str) -> list[str]:
        """The files of 'train_path', 'validation_path' or 'test_path' as given (empty: none);
        after resolution (jobs/resolve.py), absolute and checked."""
        value = getattr(self, role)
        if value is None:
            return []
        return [value] if isinstance(value, str) else list(value)

    def files(self) -> list[str]:
        return [p for role in ROLES for p in self.files_of(role)]


class ModelSection(SpecSection):
    """Which backbone: a named one the family offers, a local Hugging Face folder, or a backbone
    `biomed pretrain` registered. A family's section lists its backbones in `backbone_names`."""

    backbone_names: ClassVar[tuple[str, ...]] = ()
    family_name: ClassVar[str] = ""

    backbone: str | None = Field(default=None, description="Named backbone from the task family's registry (see the family's guide).")
    path: str | None = Field(
        default=None,
        description="A local Hugging Face model folder (config.json, safetensors weights, tokenizer). Exclusive with `backbone`.",
    )
    pretrained: str | None = Field(
        default=None,
        description="NAME or NAME@VERSION: a backbone registered by `biomed pretrain` in this spec's registry (registry_storage_path, else storage_path) (its best version when no version is given; the run pins the version it found). Exclusive with `backbone` and `path`.",
    )

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, value: str | None) -> str | None:
        if value is not None and value not in cls.backbone_names:
            raise ValueError(f"unknown backbone {value!r} for the {cls.family_name} family; its backbones: {sorted(cls.backbone_names)}")
        return value

    @model_validator(mode="after")
    def _exactly_one(self):
        if sum(v is not None for v in (self.backbone, self.path, self.pretrained)) != 1:
            raise ValueError("give exactly one of model.backbone, model.path or model.pretrained")
        return self


class TrainingSection(SpecSection):
    epochs: int = Field(default=3, ge=1, le=1000, description="Passes over the training data.")
    batch_size_per_worker: int = Field(default=16, ge=1, le=4096, description="Examples per step on each worker; the global batch is this × num_workers × gradient_accumulation_steps.")
    learning_rate: float = Field(default=5e-5, gt=0.0, le=1.0, description="Peak AdamW learning rate. Omitted: 5e-5 (1e-3, chemprop's peak rate, for the dmpnn backbone).")
    head_learning_rate: float | None = Field(
        default=None,
        gt=0.0,
        le=1.0,
        description="Peak learning rate of the new classification head. Omitted: learning_rate. A randomly initialised head on a small data set often needs a larger rate than the pretrained body.",
    )
    weight_decay: float = Field(default=0.01, ge=0.0, le=1.0, description="AdamW weight decay (not applied to biases and LayerNorm weights).")
    warmup_ratio: float = Field(default=0.1, ge=0.0, lt=1.0, description="Share of optimizer steps with linear warm-up; linear decay to zero after.")
    gradient_accumulation_steps: int = Field(default=1, ge=1, le=1024, description="Micro-batches summed before each optimizer step (gradients sync across workers only on the last).")
    max_seq_length: int = Field(default=128, ge=8, le=8192, description="Tokens per input after truncation; batches are padded to their longest row, not to this.")
    dropout: float | None = Field(default=None, ge=0.0, lt=1.0, description="Hidden and attention dropout of the backbone. Omitted: the backbone's own.")
    class_weighting: Literal["none", "balanced"] = Field(
        default="none",
        description="Loss weights per class: none, or balanced (inverse class frequency in the training split, as in scikit-learn), for skewed label sets.",
    )
    max_grad_norm: float = Field(default=1.0, gt=0.0, description="Gradient clipping by global norm.")
    eval_batch_size: int = Field(default=64, ge=1, le=4096, description="Examples per forward pass during evaluation.")
    seed: int = Field(default=0, ge=0, description="Seed of model initialisation and data order.")
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        default="fp32", description="Autocast precision: fp32, bf16 (CPU or GPU) or fp16 (GPU, with loss scaling)."
    )
    group_by_length: bool | None = Field(
        default=None,
        description="Draw each training batch from rows of similar length (shuffled mega-batches sorted by length, as Hugging Face's LengthGroupedSampler), so less compute goes to padding; still every row once per epoch, deterministic per seed. Sequence inputs only. Omitted: on for sequence inputs (text, DNA, protein, SMILES), off for feature rows and for the dmpnn backbone (graphs are not padded).",
    )


def offering(section: type[ModelSection], family: str, backbones) -> type[ModelSection]:
    """`section` as the `model:` section of `family`: its backbone field takes (and its
    description lists) the family's backbones."""
    from pydantic import create_model

    names = tuple(sorted(backbones))
    described = Field(default=None, description=f"Named backbone of the {family} family: one of {list(names)}.")
    cls = create_model(f"{family.title()}{section.__name__}", __base__=section, backbone=(str | None, described))
    cls.backbone_names, cls.family_name = names, family
    return cls
