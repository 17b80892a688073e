"""The job spec: one YAML file that says what to train, on what, with which resources.

Validated once, before any compute; the same model re-validates the plain dict that crosses
into each Ray worker. Field descriptions are the documentation (`biomed schema`).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from biomed.data import SUPPORTED_SUFFIXES, column_names, distinct_labels
from biomed.models import BACKBONES, check_local_model_dir
from biomed.tasks import TASKS, get_task
from jobs.tune_spec import TuneSpec
from serving.config import ServeSpec


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _absolute(path: str) -> str:
    return str(Path(path).expanduser().resolve())


class TaskSpec(_Spec):
    name: str = Field(description=f"Task family from the biomed task registry: one of {sorted(TASKS)}.")
    labels: list[str] | None = Field(
        default=None,
        min_length=2,
        description="The label set in class-id order. Omitted: the sorted distinct values of the "
        "training file's label column.",
    )

    @field_validator("name")
    @classmethod
    def _known_task(cls, value: str) -> str:
        get_task(value)
        return value

    @field_validator("labels")
    @classmethod
    def _distinct(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError(f"labels must be distinct, got {value}")
        return value


class DataSpec(_Spec):
    train_path: str = Field(description="Training data: a Parquet (.parquet) or CSV/TSV file. Relative paths are resolved against the working directory.")
    validation_path: str | None = Field(
        default=None,
        description="Validation data file. Omitted: a stratified `validation_fraction` of the training file is held out.",
    )
    test_path: str | None = Field(
        default=None, description="Held-out test file, scored once with the selected checkpoint after training."
    )
    validation_fraction: float = Field(
        default=0.15, gt=0.0, lt=0.5, description="Share of the training file held out for validation when no validation_path is given."
    )
    split_seed: int = Field(default=0, ge=0, description="Seed of the stratified train/validation split.")
    text_column: str = Field(default="text", description="Column holding the input text.")
    label_column: str = Field(default="label", description="Column holding the label.")

    @field_validator("train_path", "validation_path", "test_path")
    @classmethod
    def _existing_file(cls, value: str | None) -> str | None:
        if value is None:
            return None
        path = Path(value).expanduser()
        if not path.is_file():
            raise ValueError(f"file not found: {value!r} (resolved to {str(path.resolve())!r})")
        if path.suffix.lower() not in SUPPORTED_SUFFIXES:
            raise ValueError(f"unsupported file type {value!r}: expected one of {SUPPORTED_SUFFIXES}")
        return _absolute(value)

    @model_validator(mode="after")
    def _columns_present(self) -> "DataSpec":
        for field in ("train_path", "validation_path", "test_path"):
            path = getattr(self, field)
            if path is None:
                continue
            present = column_names(path)
            for role in ("text_column", "label_column"):
                column = getattr(self, role)
                if column not in present:
                    raise ValueError(f"{role} {column!r} is not a column of {field} {path!r} (columns: {present})")
        return self

    def files(self) -> list[str]:
        return [p for p in (self.train_path, self.validation_path, self.test_path) if p is not None]


class ModelSpec(_Spec):
    backbone: str | None = Field(
        default=None, description=f"Named backbone from the biomed registry: one of {sorted(BACKBONES)}."
    )
    path: str | None = Field(
        default=None,
        description="A local Hugging Face model folder (config.json, safetensors weights, tokenizer). Exclusive with `backbone`.",
    )

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, value: str | None) -> str | None:
        if value is not None and value not in BACKBONES:
            raise ValueError(f"unknown backbone {value!r}; known backbones: {sorted(BACKBONES)}")
        return value

    @field_validator("path")
    @classmethod
    def _model_dir(cls, value: str | None) -> str | None:
        if value is None:
            return None
        check_local_model_dir(Path(value).expanduser())
        return _absolute(value)

    @model_validator(mode="after")
    def _exactly_one(self) -> "ModelSpec":
        if (self.backbone is None) == (self.path is None):
            raise ValueError("give exactly one of model.backbone or model.path")
        return self


class TrainingSpec(_Spec):
    epochs: int = Field(default=3, ge=1, le=1000, description="Passes over the training data.")
    batch_size_per_worker: int = Field(default=16, ge=1, le=4096, description="Examples per step on each worker; the global batch is this × num_workers × gradient_accumulation_steps.")
    learning_rate: float = Field(default=5e-5, gt=0.0, le=1.0, description="Peak AdamW learning rate.")
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


class ScalingSpec(_Spec):
    num_workers: int = Field(default=1, ge=1, le=4096, description="Data-parallel (DDP) training workers; each sees its own shard of every epoch.")
    use_gpu: bool = Field(default=False, description="Give each worker GPUs and train on CUDA.")
    cpus_per_worker: float = Field(default=1.0, gt=0.0, description="CPUs reserved per worker (also its torch thread count).")
    gpus_per_worker: float = Field(default=1.0, ge=0.0, description="GPUs reserved per worker when use_gpu is true.")


class CheckpointSpec(_Spec):
    num_to_keep: int = Field(default=2, ge=1, description="Checkpoints kept by the selection metric (the latest is always kept too, for resuming).")
    metric: str | None = Field(default=None, description="Validation metric that selects the best checkpoint. Omitted: the task's default (macro_f1 for text classification).")
    mode: Literal["max", "min"] | None = Field(default=None, description="Whether a higher or lower metric is better. Omitted: the metric's natural direction.")


class FailureSpec(_Spec):
    max_failures: int = Field(default=2, ge=-1, description="Worker-group failures to recover from by restarting from the latest checkpoint (-1: no limit).")


class JobSpec(_Spec):
    name: str = Field(description="Model name in the registry and prefix of the run name: lower-case letters, digits, '-', '_' or '.'.")
    task: TaskSpec = Field(description="What is predicted.")
    data: DataSpec = Field(description="Where the labelled examples are.")
    model: ModelSpec = Field(description="The backbone to fine-tune.")
    training: TrainingSpec = Field(default_factory=TrainingSpec, description="Optimisation settings.")
    scaling: ScalingSpec = Field(default_factory=ScalingSpec, description="Workers and resources.")
    checkpointing: CheckpointSpec = Field(default_factory=CheckpointSpec, description="Which checkpoints are kept and which is best.")
    failure: FailureSpec = Field(default_factory=FailureSpec, description="Fault tolerance.")
    storage_path: str = Field(default="runs", description="Where runs and the registry live: a local or shared (NFS) folder, visible to every node.")
    tune: TuneSpec | None = Field(default=None, description="Hyperparameter search run by `biomed tune` (ignored by `biomed train`).")
    serve: ServeSpec | None = Field(default=None, description="How `biomed serve deploy` hosts this model (replicas, batching, limits); its flags override it.")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,62}", value):
            raise ValueError(f"name {value!r} must be 1-63 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit")
        return value

    @field_validator("storage_path")
    @classmethod
    def _storage(cls, value: str) -> str:
        if "://" in value:
            raise ValueError(f"storage_path {value!r}: give a local or shared filesystem folder, not a URI")
        return _absolute(value)

    @model_validator(mode="after")
    def _labels_and_metric(self) -> "JobSpec":
        task = get_task(self.task.name)
        metric = self.checkpointing.metric
        if metric is not None and metric not in task.metric_names:
            raise ValueError(
                f"checkpointing.metric {metric!r} is not produced by task {task.name!r} (it produces {list(task.metric_names)})"
            )
        if self.tune is not None:
            self.tune.check_fields(self.training)
            if self.tune.metric is not None and self.tune.metric not in task.metric_names:
                raise ValueError(f"tune.metric {self.tune.metric!r} is not produced by task {task.name!r} (it produces {list(task.metric_names)})")
        if self.task.labels is None:
            labels = distinct_labels(self.data.train_path, self.data.label_column)
            if len(labels) < 2:
                raise ValueError(f"label column {self.data.label_column!r} of {self.data.train_path!r} has fewer than 2 distinct labels: {labels}")
            object.__setattr__(self, "task", self.task.model_copy(update={"labels": labels}))
        return self

    @property
    def metric(self) -> str:
        return self.checkpointing.metric or get_task(self.task.name).default_metric

    @property
    def mode(self) -> str:
        return self.checkpointing.mode or get_task(self.task.name).metric_mode(self.metric)

    def spec_hash(self) -> str:
        """sha256 of the settings that change what is trained (failure handling and the search
        and serve sections excluded: a trial's spec has its sampled values written into `training`)."""
        payload = self.model_dump(mode="json", exclude={"failure", "tune", "serve"})
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


class SpecError(ValueError):
    """A spec that cannot run; the message names each bad field and value."""


def format_validation_error(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        got = item.get("input")
        shown = "" if isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"{where}: {message}{shown}" if where else f"{message}{shown}")
    return "\n".join(lines)


def parse_spec(raw: dict) -> JobSpec:
    """Validate a spec dict; raise SpecError with one line per problem."""
    try:
        return JobSpec.model_validate(raw)
    except ValidationError as error:
        raise SpecError(format_validation_error(error)) from None


def load_spec(path: str | Path, *, storage_path: str | None = None) -> JobSpec:
    """Read and validate a YAML spec file; `storage_path` replaces the file's own."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"spec file not found: {str(path)!r}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise SpecError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    if storage_path is not None:
        raw["storage_path"] = storage_path
    return parse_spec(raw)
