"""The job spec: one YAML file that says what to train, on what, with which resources.

Validated once, before any compute; the same model re-validates the plain dict that crosses
into each Ray worker. Field descriptions are the documentation (`biomed schema`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from biomed.data import Columns, distinct_labels
from biomed.streams import check_files
from biomed.models import check_backbone_input
from jobs.model_spec import ModelSpec, check_folder_for
from biomed.tasks import TASKS, get_task
from jobs.data_spec import DataSpec
from jobs.spec_base import _RunSpec, _Spec
from jobs.tune_spec import TuneSpec
from jobs.serve_spec import ServeSpec
from jobs.scaling_spec import ScalingSpec


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


class TrainingSpec(_Spec):
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
    augment_strength: float = Field(default=0.0, ge=0.0, le=1.0, description="Image tasks: strength of the training-only MONAI augmentation (random flip, rotation up to 15°, zoom up to ±15%, each on half the images at 1.0; scaled down linearly). 0: none.")
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


class CheckpointSpec(_Spec):
    num_to_keep: int = Field(default=2, ge=1, description="Checkpoints kept by the selection metric (the latest is always kept too, for resuming).")
    metric: str | None = Field(default=None, description="Validation metric that selects the best checkpoint. Omitted: the task's default (macro_f1 for text, auroc for other classification, rmse for regression, c_index for survival).")
    mode: Literal["max", "min"] | None = Field(default=None, description="Whether a higher or lower metric is better. Omitted: the metric's natural direction.")
    every_n_steps: int | None = Field(
        default=None, ge=1,
        description="Also checkpoint every N optimizer steps inside an epoch, so a killed worker costs at most N steps; a resumed run continues with the next batch of the same order. Omitted: checkpoints at epoch ends only.",
    )
    eval_every_n_steps: int | None = Field(
        default=None, ge=1,
        description="Validate every N optimizer steps (and after the last one) instead of at epoch ends; each validated checkpoint is a candidate for best. Omitted: validation at epoch ends.",
    )


class FailureSpec(_Spec):
    max_failures: int = Field(default=2, ge=-1, description="Worker-group failures to recover from by restarting from the latest checkpoint (-1: no limit); in a search, retries of a failed trial, each resuming its run from its latest checkpoint.")


class JobSpec(_RunSpec):
    task: TaskSpec = Field(description="What is predicted.")
    data: DataSpec = Field(description="Where the labelled examples are.")
    model: ModelSpec = Field(description="The backbone to fine-tune.")
    training: TrainingSpec = Field(default_factory=TrainingSpec, description="Optimisation settings.")
    scaling: ScalingSpec = Field(default_factory=ScalingSpec, description="Workers and resources.")
    checkpointing: CheckpointSpec = Field(default_factory=CheckpointSpec, description="Which checkpoints are kept and which is best.")
    failure: FailureSpec = Field(default_factory=FailureSpec, description="Fault tolerance.")
    tune: TuneSpec | None = Field(default=None, description="Hyperparameter search run by `biomed tune` (ignored by `biomed train`).")
    serve: ServeSpec | None = Field(default=None, description="How `biomed serve deploy` hosts this model (replicas, batching, limits); its flags override it.")


    @model_validator(mode="before")
    @classmethod
    def _graph_training_defaults(cls, data):
        # A D-MPNN trains at chemprop's peak rate (1e-3), not a transformer's; and its batches
        # have no padding, so grouping them by size would only correlate batches with the target.
        # Resolved here so the run name (a hash of the spec) names what was trained.
        if isinstance(data, dict) and isinstance(data.get("model"), dict) and data["model"].get("backbone") == "dmpnn":
            training = dict(data.get("training") or {})
            training.setdefault("learning_rate", 1e-3)
            training.setdefault("group_by_length", False)
            data = {**data, "training": training}
        return data

    @model_validator(mode="after")
    def _labels_and_metric(self) -> "JobSpec":
        task = get_task(self.task.name)
        self.scaling.check_checkpointing(self.checkpointing)
        self._check_data_for(task)
        self._check_model_for(task)
        metric = self.checkpointing.metric
        if metric is not None and metric not in task.metric_names:
            raise ValueError(
                f"checkpointing.metric {metric!r} is not produced by task {task.name!r} (it produces {list(task.metric_names)})"
            )
        if self.tune is not None:
            self.tune.check_fields(self.training, self.model)
            if self.tune.metric is not None and self.tune.metric not in task.metric_names:
                raise ValueError(f"tune.metric {self.tune.metric!r} is not produced by task {task.name!r} (it produces {list(task.metric_names)})")
        if self.training.group_by_length and not task.is_sequence:
            raise ValueError(f"training.group_by_length is for sequence inputs; task {task.name!r} reads {task.input_kind} inputs, which have no length")
        if self.training.group_by_length is None:
            # Resolved here so the run name (a hash of the spec) names the order trained in.
            object.__setattr__(self, "training", self.training.model_copy(update={"group_by_length": task.is_sequence}))
        if self.training.augment_strength and task.input_kind != "image":
            raise ValueError(f"training.augment_strength is for image tasks; task {task.name!r} reads {task.input_kind}")
        if task.target_kind != "classification":
            if self.task.labels is not None:
                raise ValueError(f"task.labels is for classification; task {task.name!r} predicts a {task.target_kind} target")
            if self.training.class_weighting != "none":
                raise ValueError(f"training.class_weighting {self.training.class_weighting!r} is for classification; task {task.name!r} predicts a {task.target_kind} target")
        elif self.task.labels is None:
            labels = distinct_labels(self.data.files_of("train_path"), self.data.label_column)
            if len(labels) < 2:
                raise ValueError(f"label column {self.data.label_column!r} of {self.data.train_path!r} has fewer than 2 distinct labels: {labels}")
            object.__setattr__(self, "task", self.task.model_copy(update={"labels": labels}))
        return self

    def _check_data_for(self, task) -> None:
        d = self.data
        if task.has_input_column and (d.numeric_columns or d.categorical_columns):
            raise ValueError(f"data.numeric_columns/categorical_columns are for tabular tasks; task {task.name!r} reads {'data.images.column' if task.input_kind == 'image' else 'data.text_column'}")
        if not task.has_input_column and not (d.numeric_columns or d.categorical_columns):
            raise ValueError(f"task {task.name!r} needs feature columns: give data.numeric_columns and/or data.categorical_columns")
        overlap = set(d.numeric_columns) & set(d.categorical_columns)
        if overlap:
            raise ValueError(f"columns {sorted(overlap)} are listed as both numeric and categorical")
        if task.target_kind == "survival" and (d.time_column is None or d.event_column is None):
            raise ValueError(f"task {task.name!r} needs data.time_column and data.event_column")
        if task.target_kind != "survival" and (d.time_column or d.event_column):
            raise ValueError(f"data.time_column/event_column are for survival tasks, not {task.name!r}")
        if d.split == "scaffold" and task.input_kind != "smiles":
            raise ValueError(f"data.split 'scaffold' needs molecules (SMILES); task {task.name!r} reads {task.input_kind}")
        if d.split == "stratified" and task.target_kind == "regression":
            raise ValueError(f"data.split 'stratified' needs classes or events; task {task.name!r} predicts a real value (use random or scaffold)")
        for role in ("train_path", "validation_path", "test_path"):
            if getattr(d, role) is not None:
                check_files(d.files_of(role), self.columns().all(), role=f"data.{role}")

    def _check_model_for(self, task) -> None:
        if self.model.backbone is not None:
            check_backbone_input(self.model.backbone, task.input_kind)
        elif task.input_kind == "tabular":
            raise ValueError(f"task {task.name!r} trains the 'mlp' backbone, not a Hugging Face folder (model.path or model.pretrained)")
        elif task.input_kind == "image" or self.model.path is not None:
            check_folder_for(self.model, task)
        if task.input_kind == "image" and self.model.pooling is not None:
            # The model spec resolves a folder's pooling before it knows the task; an image model
            # pools by its own architecture, so the spec (and the run name) records none.
            object.__setattr__(self, "model", self.model.model_copy(update={"pooling": None}))
        if self.model.pretrained is not None:
            entry = pretrained_backbone(self.model, self.registry_storage, input_kind=task.input_kind)
            # Pinned, so the run name (a hash of the spec) names the version trained from.
            update = {"pretrained": f"{entry['name']}@{entry['version']}"}
            if task.input_kind == "dna":
                from biomed.checkpoint import read_metadata  # torch: only when a DNA backbone is named

                update |= backbone_dna_cut(self.model, read_metadata(entry["path"]).get("encoder", {}))
            object.__setattr__(self, "model", self.model.model_copy(update=update))
        if self.model.hidden_sizes is not None and self.model.backbone != "mlp":
            raise ValueError("model.hidden_sizes sets the widths of the 'mlp' backbone only")
        if self.model.molecule_features != "none" and task.input_kind != "smiles":
            raise ValueError(f"model.molecule_features {self.model.molecule_features!r} are computed from molecules; task {task.name!r} reads {task.input_kind}")
        reason = self.in_memory_reason()
        if reason is not None and self.data.streaming == "on":
            raise ValueError(f"{reason}; data.streaming 'on' streams that split (use auto or off)")

    def in_memory_reason(self) -> str | None:
        """Why this job needs its training split in memory (never streamed), or None."""
        if self.model.molecule_features != "none":
            return f"model.molecule_features {self.model.molecule_features!r} are standardised on the training split in memory"
        if get_task(self.task.name).input_kind == "image":
            return f"task {self.task.name!r} holds the training split's decoded images in memory"
        return None

    def columns(self) -> Columns:
        """The data columns this spec's task reads."""
        task = get_task(self.task.name)
        d = self.data
        return Columns(
            input=d.images.column if task.input_kind == "image" else d.text_column if task.is_sequence else None,
            label=d.label_column if task.target_kind != "survival" else None,
            numeric=tuple(d.numeric_columns),
            categorical=tuple(d.categorical_columns),
            time=d.time_column if task.target_kind == "survival" else None,
            event=d.event_column if task.target_kind == "survival" else None,
        )

    @property
    def split_method(self) -> str:
        if self.data.split is not None:
            return self.data.split
        return "random" if get_task(self.task.name).target_kind == "regression" else "stratified"

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


def pretrained_backbone(model: ModelSpec, storage_path: str, *, input_kind: str) -> dict:
    """The registry entry `model.pretrained` names: a backbone pretrained on this input.
    Raises ValueError naming what does not fit."""
    from jobs.registry import RegistryError, registry_for

    try:
        entry = registry_for(storage_path).get(model.pretrained)
    except RegistryError as error:
        raise ValueError(f"model.pretrained: {error}") from None
    if entry.get("kind") != "backbone":
        raise ValueError(f"model.pretrained {model.pretrained!r} is a fine-tuned model, not a backbone from `biomed pretrain`: use model.path for its folder")
    if entry.get("family") != input_kind:
        raise ValueError(f"model.pretrained {model.pretrained!r} was pretrained on {entry.get('family')} sequences, not {input_kind}")
    return entry


def backbone_dna_cut(model: ModelSpec, encoder: dict) -> dict:
    """The k-mer cut a DNA fine-tune takes from its backbone's encoder metadata: kmer_size and
    kmer_stride as the backbone read its corpus (kmer_size None: bases through its BPE). A cut
    the spec sets itself must be the backbone's; raises ValueError naming both."""
    theirs = {"kmer_size": encoder.get("kmer_size"), "kmer_stride": encoder.get("kmer_stride")}
    if theirs["kmer_size"] is None:  # no k-mers: the stride means nothing, so the spec's stands
        theirs["kmer_stride"] = model.kmer_stride
    for key in ("kmer_size", "kmer_stride"):
        if key in model.model_fields_set and getattr(model, key) != theirs[key]:
            read = "by BPE, with no k-mer cut (leave out model.kmer_size)" if theirs["kmer_size"] is None else f"as {theirs['kmer_size']}-mers with stride {theirs['kmer_stride']}"
            raise ValueError(f"model.{key} {getattr(model, key)!r} differs from backbone {model.pretrained!r}, which reads DNA {read}")
    return theirs


def model_folder(spec: JobSpec) -> str | None:
    """The Hugging Face folder the spec fine-tunes: model.path, or the pretrained backbone's version."""
    if spec.model.pretrained is not None:
        from jobs.registry import registry_for

        return registry_for(spec.registry_storage).get(spec.model.pretrained)["path"]
    return spec.model.path


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


def validate_spec(spec_class, raw: dict):
    """`raw` as a `spec_class` (JobSpec, PretrainSpec); raise SpecError with one line per problem."""
    try:
        return spec_class.model_validate(raw)
    except ValidationError as error:
        raise SpecError(format_validation_error(error)) from None


def parse_spec(raw: dict) -> JobSpec:
    """Validate a spec dict; raise SpecError with one line per problem."""
    return validate_spec(JobSpec, raw)


def read_spec_file(path: str | Path, *, storage_path: str | None = None) -> dict:
    """A YAML spec file as a dict (not yet validated); `storage_path` replaces the file's own."""
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
    return raw


def load_spec(path: str | Path, *, storage_path: str | None = None) -> JobSpec:
    """Read and validate a YAML spec file; `storage_path` replaces the file's own."""
    return parse_spec(read_spec_file(path, storage_path=storage_path))
