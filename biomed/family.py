"""What the rest of the service may ask of a task family, and the task table's entries.

A family is one kind of input (free text, DNA, protein, molecules, tabular records, images) and
everything that belongs to it: the input check, the encoder fitted on the training split and
saved with the checkpoint, the backbones it offers and how each is built, its classical
baseline, its spec sections, the shape of its serving request, and planted-signal data for
tests. Each lives in one folder under biomed/families/ and registers with one call
(`biomed.families.register_family`). Code outside the families asks a family; it never
compares a family, task or backbone name.

A task is a family × a target (biomed.targets): `text_classification` is the text family with
class labels, `survival` the tabular family with (time, event) targets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol, runtime_checkable

import numpy as np

from biomed.targets import TARGETS, Target

if TYPE_CHECKING:
    import pyarrow as pa
    from pydantic import BaseModel


@dataclass(frozen=True)
class TaskDef:
    """One task a family offers: its name, target kind, default selection metric and description."""

    name: str
    target: str
    default_metric: str
    description: str


@dataclass(frozen=True)
class Task:
    """A family × a target, as the task table holds it."""

    name: str
    family: Family
    target: Target
    default_metric: str
    description: str

    @property
    def metric_names(self) -> tuple[str, ...]:
        return self.target.metric_names

    @property
    def baseline(self) -> str:
        """The name of the classical baseline this task is compared with."""
        return self.family.baseline(self.target).name

    def metric_mode(self, metric: str) -> str:
        return "min" if metric in self.target.minimised else "max"

    def compute_metrics(self, targets: np.ndarray, predictions: np.ndarray, names: tuple[str, ...] | None = None) -> dict[str, float]:
        return self.target.metrics(targets, predictions, names)

    @classmethod
    def of(cls, family: Family, definition: TaskDef) -> Task:
        return cls(definition.name, family, TARGETS[definition.target], definition.default_metric, definition.description)


@dataclass(frozen=True)
class Baseline:
    """A classical model fitted on the training inputs and targets: `fit_predict(train_x,
    train_y, test_x, context)` returns test predictions in the target's format."""

    name: str
    fit_predict: Callable[..., np.ndarray]
    description: str = ""


@dataclass(frozen=True)
class Resolution:
    """What a family settles on the driver (jobs/resolve.py): `updates` to the spec's sections
    (family-dependent defaults, so the run name names what is trained) and `settings` read from
    files that the workers need but the run name does not (an image folder's preprocessor
    config). Settings never hold values derived from spec fields: a search's trials change those."""

    updates: dict[str, dict] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Encoder(Protocol):
    """Validated inputs → model batches; fitted on the training split, saved with the checkpoint."""

    input_kind: str

    def encode(self, inputs: list, *, max_length: int): ...

    def metadata(self) -> dict: ...

    def save(self, directory) -> None: ...


class Family(Protocol):
    """The contract between a task family and the rest of the service."""

    name: str  # the input kind checkpoints record ("text", "dna", "protein", "smiles", "tabular", "image")
    description: str
    tasks: tuple[TaskDef, ...]
    # Whether inputs have a length to group batches by (sequences), so training.group_by_length applies.
    has_length: bool
    # Split methods beyond stratified and random that `hold_out` offers (molecules: scaffold).
    split_methods: tuple[str, ...]
    request: type[BaseModel]  # the predict request body (serving/schemas.py wraps it)
    # Whether inputs are files: uploaded as multipart/form-data too, bounded by bytes, not characters.
    accepts_files: bool

    # --- the spec ---
    data_section: type[BaseModel]
    model_section: type[BaseModel]
    training_section: type[BaseModel]

    def check(self, spec, task: Task) -> None:
        """Cross-section checks on a parsed spec (pure: no I/O); ValueError naming the field."""

    def resolve(self, spec, *, backbone_metadata: dict | None) -> Resolution:
        """The family's defaults and settings for a spec whose files and folders are resolved
        (it may read the model folder); `backbone_metadata`: a pretrained backbone's biomed.json."""

    def input_columns(self, data) -> dict:
        """The data columns holding the input: {"input": column} or {"numeric": (...), "categorical": (...)}."""

    def in_memory_reason(self, spec) -> str | None:
        """Why this spec's training split must be held in memory (never streamed), or None."""

    def hold_out(self, method: str, inputs: list, fraction: float) -> tuple[np.ndarray, np.ndarray] | None:
        """(train, validation) indices for a split method only this family offers (scaffold), else None."""

    # --- inputs and encoding ---
    def validator(self, spec, *, serving: bool = False):
        """The input check of a spec's data files (biomed.inputs.InputValidator)."""

    def load_validator(self, payload: dict):
        """The input check a checkpoint recorded (biomed.json "validator")."""

    def encoder_statistics(self, spec, *, has_tokenizer: bool):
        """What a streamed pass over the training split collects to build the encoder (None: nothing)."""

    def build_encoder(self, job, *, train_inputs: list, statistics: dict | None) -> Encoder:
        """The encoder fitted on the training inputs, or built from a streamed pass's statistics."""

    def load_encoder(self, directory, metadata: dict) -> Encoder:
        """The encoder saved with a checkpoint."""

    def probe_input(self, example) -> Any:
        """A validated input as JSON, for the golden check recorded at registration."""

    def parse_cli_input(self, text: str) -> Any:
        """One `biomed predict --input` value as this family's input."""

    # --- models ---
    backbones: Mapping[str, Any]

    def backbone_tokenizer(self, job):
        """The tokenizer the backbone brings (None: the family builds its own, or takes no tokens)."""

    def build_model(self, job, *, encoder: Encoder, labels: list[str], num_outputs: int):
        """A Hugging Face model with `num_outputs` outputs on the job's backbone."""

    def register_auto_classes(self) -> None:
        """Register the family's model classes with transformers' Auto classes (import its model modules)."""

    def load_model(self, directory):
        """The model of a checkpoint folder (safetensors only)."""

    # --- explanations (biomed.explain) ---
    def explain(self, predictor, raw, validated, *, target_index: int, n_steps: int):
        """Attributions of the model's output `target_index` for one input (`raw` as the user
        sent it, `validated` as the check returned it), mapped onto the user's input: a
        `biomed.explain.Explained`."""

    # --- the classical baseline ---
    def baseline(self, target: Target) -> Baseline:
        """The classical model a fine-tune of this family must beat, for the target."""

    def baseline_context(self, spec) -> dict:
        """What the baseline may know besides the data (k-mer size, feature names)."""

    # --- tests ---
    def planted(self, num_rows: int, *, seed: int, folder) -> tuple[pa.Table, dict]:
        """A table with a planted signal, and the spec's `task`, `data` and `model` for it."""
