"""The job spec: one YAML file that says what to train, on what, with which resources.

A pure pydantic model, one arm per task family (a discriminated union on the task's family):
the family's own `data:`, `model:` and `training:` sections (biomed/families/<family>/) take its
fields, and no validator reads a file. Field descriptions are the documentation (`biomed
schema`). jobs/resolve.py turns a parsed spec into the resolved job that names and runs a run.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Literal, Union

import yaml
from pydantic import Discriminator, Field, Tag, TypeAdapter, ValidationError, create_model, field_validator, model_validator

from biomed.families import backbone_owners, families, get_task, tasks
from biomed.family import Family, Task
from biomed.spec_sections import DataSection, ModelSection, TrainingSection
from jobs.scaling_spec import ScalingSpec
from jobs.serve_spec import ServeSpec
from jobs.spec_base import _RunSpec, _Spec
from jobs.tune_spec import TuneSpec


class TaskSpec(_Spec):
    name: str = Field(description=f"Task from the task table (a family × a target): one of {sorted(tasks())}.")
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
    """What every family's job spec has; `job_spec_class(family)` is one family's arm."""

    task: TaskSpec = Field(description="What is predicted.")
    data: DataSection = Field(description="Where the labelled examples are.")
    model: ModelSection = Field(description="The backbone to fine-tune.")
    training: TrainingSection = Field(default_factory=TrainingSection, description="Optimisation settings.")
    scaling: ScalingSpec = Field(default_factory=ScalingSpec, description="Workers and resources.")
    checkpointing: CheckpointSpec = Field(default_factory=CheckpointSpec, description="Which checkpoints are kept and which is best.")
    failure: FailureSpec = Field(default_factory=FailureSpec, description="Fault tolerance.")
    tune: TuneSpec | None = Field(default=None, description="Hyperparameter search run by `biomed tune` (ignored by `biomed train`).")
    serve: ServeSpec | None = Field(default=None, description="How `biomed serve deploy` hosts this model (replicas, batching, limits); its flags override it.")

    @property
    def task_entry(self) -> Task:
        return get_task(self.task.name)

    @property
    def family(self) -> Family:
        return self.task_entry.family

    @model_validator(mode="after")
    def _consistent(self) -> JobSpec:
        task = self.task_entry
        self.scaling.check_checkpointing(self.checkpointing)
        task.family.check(self, task)
        for section, metric in (("checkpointing", self.checkpointing.metric), ("tune", self.tune.metric if self.tune else None)):
            if metric is not None and metric not in task.metric_names:
                raise ValueError(f"{section}.metric {metric!r} is not produced by task {task.name!r} (it produces {list(task.metric_names)})")
        if self.tune is not None:
            self.tune.check_fields(self.training, self.model)
        if self.training.group_by_length and not task.family.has_length:
            raise ValueError(f"training.group_by_length is for sequence inputs; task {task.name!r} reads {task.family.name} inputs, which have no length")
        self._check_target(task)
        reason = self.in_memory_reason()
        if reason is not None and self.data.streaming == "on":
            raise ValueError(f"{reason}; data.streaming 'on' streams that split (use auto or off)")
        return self

    def _check_target(self, task: Task) -> None:
        target, d = task.target, self.data
        if not target.has_labels:
            if self.task.labels is not None:
                raise ValueError(f"task.labels is for classification; task {task.name!r} predicts a {target.kind} target")
            if self.training.class_weighting != "none":
                raise ValueError(f"training.class_weighting {self.training.class_weighting!r} is for classification; task {task.name!r} predicts a {target.kind} target")
        methods = ("stratified", "random", *task.family.split_methods)
        if d.split is not None and d.split not in methods:
            raise ValueError(f"data.split {d.split!r} is not offered for task {task.name!r}, which reads {task.family.name} inputs (splits: {list(methods)})")
        if d.split == "stratified" and not target.stratifiable:
            raise ValueError(f"data.split 'stratified' needs classes or events; task {task.name!r} predicts a real value (use random or scaffold)")

    def in_memory_reason(self) -> str | None:
        """Why this job needs its training split in memory (never streamed), or None."""
        return self.family.in_memory_reason(self)

    def columns(self):
        """The data columns this spec's task reads: the family's input and the target's columns."""
        from biomed.data import Columns

        task = self.task_entry
        return Columns(**task.family.input_columns(self.data), **task.target.columns(self.data))

    @property
    def split_method(self) -> str:
        return self.data.split or self.task_entry.target.default_split

    @property
    def metric(self) -> str:
        return self.checkpointing.metric or self.task_entry.default_metric

    @property
    def mode(self) -> str:
        return self.checkpointing.mode or self.task_entry.metric_mode(self.metric)


@functools.cache
def job_spec_class(family: Family) -> type[JobSpec]:
    """One family's arm of the job spec: its own data, model and training sections."""
    return create_model(
        f"{family.name.title()}JobSpec", __base__=JobSpec,
        data=(family.data_section, Field(description="Where the labelled examples are.")),
        model=(family.model_section, Field(description="The backbone to fine-tune.")),
        training=(family.training_section, Field(default_factory=family.training_section, description="Optimisation settings.")),
    )


def _family_tag(raw) -> str | None:
    """The family of a raw spec (by its task), or of a parsed one: the union's discriminator."""
    if isinstance(raw, JobSpec):
        return raw.family.name
    try:
        return get_task(raw["task"]["name"]).family.name
    except (KeyError, TypeError, ValueError):
        return None


def _adapter() -> TypeAdapter:
    return _adapter_for(tuple(families()))


@functools.cache
def _adapter_for(registered: tuple[Family, ...]) -> TypeAdapter:
    arms = tuple(Annotated[job_spec_class(f), Tag(f.name)] for f in registered)
    union = Annotated[Union[arms], Discriminator(_family_tag)]  # noqa: UP007 (a tuple of arms)
    return TypeAdapter(union)


def spec_schema() -> dict:
    """The JSON schema of the job spec: one arm per task family (`biomed schema`)."""
    return _adapter().json_schema()


class SpecError(ValueError):
    """A spec that cannot run; the message names each bad field and value."""


def _foreign_field_hint(section: str, key: str) -> str:
    """Which families' sections take a key this family's does not, as a hint."""
    owners = [f.name for f in families() if key in getattr(f, f"{section}_section", _Spec).model_fields]
    whose = "families'" if len(owners) > 1 else "family's"
    return f" (a field of the {', '.join(owners)} {whose} {section} section)" if owners else ""


def format_validation_error(error: ValidationError, *, tag: str | None = None) -> str:
    lines = []
    for item in error.errors():
        loc = list(item["loc"])
        if tag is not None and loc[:1] == [tag]:
            loc = loc[1:]  # the union's arm, not a field
        where = ".".join(str(p) for p in loc)
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key" + (_foreign_field_hint(str(loc[0]), str(loc[-1])) if len(loc) == 2 and loc[0] in ("data", "model", "training") else "")
        got = item.get("input")
        if loc[-1:] == ["backbone"] and message.startswith("unknown backbone") and backbone_owners(str(got)):
            message += f"; backbone {got!r} takes {backbone_owners(str(got))} inputs"
        shown = "" if isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"{where}: {message}{shown}" if where else f"{message}{shown}")
    return "\n".join(lines)


def validate_spec(spec_class, raw: dict):
    """`raw` as a `spec_class` (PretrainSpec); raise SpecError with one line per problem."""
    try:
        return spec_class.model_validate(raw)
    except ValidationError as error:
        raise SpecError(format_validation_error(error)) from None


def parse_spec(raw: dict) -> JobSpec:
    """Validate a job spec dict as its family's arm; raise SpecError with one line per problem."""
    name = (raw.get("task") or {}).get("name") if isinstance(raw.get("task"), dict) else None
    if name is not None:
        try:
            get_task(name)
        except ValueError as error:
            raise SpecError(f"task.name: {error} (got {name!r})") from None
    try:
        return _adapter().validate_python(raw)
    except ValidationError as error:
        raise SpecError(format_validation_error(error, tag=_family_tag(raw))) from None


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
