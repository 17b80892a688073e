"""One place for all of a job's I/O before it runs: `resolve(spec)` on the driver, once.

It makes paths absolute and checks the data files and their columns, checks a model folder,
looks a pretrained backbone up in the registry and pins its version, reads the label set from
the data, asks the family for the defaults that depend on it, and fingerprints the data files.
The result is a frozen `ResolvedJob` whose hash names the run. Ray Train workers and Tune trials
receive it as a plain dict (`to_dict`) and rebuild it without resolving anything again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

from biomed.data import distinct_labels, fingerprint_files
from biomed.family import Family, Task
from biomed.models import check_local_model_dir
from biomed.spec_sections import ROLES
from biomed.streams import check_files, resolve_files
from jobs.run_names import spec_hash
from jobs.spec import JobSpec, SpecError, job_spec_class  # noqa: F401 (SpecError: resolution's error too)
from jobs.spec_base import absolute


@dataclass(frozen=True)
class ResolvedJob:
    """A spec with everything settled: files, labels, the pinned backbone, the family's defaults."""

    spec: JobSpec
    # The Hugging Face folder fine-tuned from: model.path, or the pretrained backbone's version.
    model_folder: str | None = None
    # What the family settled that the run name does not hash (an image folder's pipeline).
    settings: dict = field(default_factory=dict)
    # storage_path as the spec wrote it (a relative path is refused on several nodes).
    storage_given: str = "runs"
    data_fingerprint: str = ""
    pretrained_entry: dict | None = None

    @property
    def task(self) -> Task:
        return self.spec.task_entry

    @property
    def family(self) -> Family:
        return self.spec.family

    def spec_hash(self) -> str:
        return spec_hash(self.spec)

    @property
    def run_name(self) -> str:
        """Deterministic: the same spec on the same data resumes the same run folder."""
        digest = hashlib.sha256(f"{self.spec_hash()}:{self.data_fingerprint}".encode()).hexdigest()[:12]
        return f"{self.spec.name}-{digest}"

    def to_dict(self) -> dict:
        """Plain JSON for a Ray worker or a trial."""
        return {
            "spec": self.spec.model_dump(mode="json"), "model_folder": self.model_folder, "settings": self.settings,
            "storage_given": self.storage_given, "data_fingerprint": self.data_fingerprint, "pretrained_entry": self.pretrained_entry,
        }

    @classmethod
    def from_dict(cls, raw: dict) -> ResolvedJob:
        """The job a driver resolved (validated as a pure spec; nothing is read or looked up)."""
        from jobs.spec import parse_spec

        return cls(spec=parse_spec(raw["spec"]), **{k: v for k, v in raw.items() if k != "spec"})

    def with_values(self, **sections: dict) -> ResolvedJob:
        """This job with some sections' fields replaced (a trial's sampled values): validated as
        a pure spec again, resolved values kept."""
        raw = self.spec.model_dump(mode="json")
        for name, values in sections.items():
            raw[name] = {**(raw.get(name) or {}), **values} if isinstance(values, dict) else values
        return replace(self, spec=job_spec_class(self.family).model_validate(raw))


def _files(spec: JobSpec) -> dict:
    """The data section's files, absolute and checked; a single plain path stays a string (the
    spec, and so its run name, reads as written)."""
    from pathlib import Path

    out, seen = {}, {}
    for role in ROLES:
        value = getattr(spec.data, role)
        if value is None:
            continue
        try:
            files = resolve_files(value)
        except ValueError as error:
            raise SpecError(f"data.{role}: {error}") from None
        for path in files:
            if path in seen and seen[path] != role:
                raise SpecError(f"data: {path!r} is in both data.{seen[path]} and data.{role}")
            seen[path] = role
        single = isinstance(value, str) and files == [str(Path(value).expanduser().resolve())]
        out[role] = files[0] if single else files
    return out


def _pretrained(spec: JobSpec) -> dict:
    """The registry entry `model.pretrained` names: a backbone pretrained on this family's inputs."""
    from jobs.registry import RegistryError, registry_for

    try:
        entry = registry_for(spec.registry_storage).get(spec.model.pretrained)
    except RegistryError as error:
        raise SpecError(f"model.pretrained: {error}") from None
    if entry.get("kind") != "backbone":
        raise SpecError(f"model.pretrained {spec.model.pretrained!r} is a fine-tuned model, not a backbone from `biomed pretrain`: use model.path for its folder")
    if entry.get("family") != spec.family.name:
        raise SpecError(f"model.pretrained {spec.model.pretrained!r} was pretrained on {entry.get('family')} sequences, not {spec.family.name}")
    return entry


def _merge(raw: dict, updates: dict) -> dict:
    for section, values in updates.items():
        raw[section] = {**raw[section], **values}
    return raw


def resolve(spec: JobSpec) -> ResolvedJob:
    """The job the spec describes, with all its I/O done (see the module doc). Raises SpecError
    quoting the field and the bad value."""
    model = spec.model
    if model.path is not None:
        try:
            check_local_model_dir(model.path)
        except ValueError as error:
            raise SpecError(f"model.path: {error}") from None
        model = model.model_copy(update={"path": absolute(model.path)})
    # Copies, not a new validation: the family's defaults look at which fields the spec set.
    located = spec.model_copy(update={
        "storage_path": absolute(spec.storage_path),
        "registry_storage_path": None if spec.registry_storage_path is None else absolute(spec.registry_storage_path),
        "data": spec.data.model_copy(update=_files(spec)), "model": model,
    })
    return _settle(located, storage_given=spec.storage_path)


def _settle(spec: JobSpec, *, storage_given: str) -> ResolvedJob:
    """The rest of resolution, on a spec whose paths are absolute."""
    task, family = spec.task_entry, spec.family
    entry = _pretrained(spec) if spec.model.pretrained is not None else None
    metadata = _backbone_metadata(entry["path"]) if entry is not None else None
    try:
        for role in ROLES:
            if getattr(spec.data, role) is not None:
                check_files(spec.data.files_of(role), spec.columns().all(), role=f"data.{role}")
        resolution = family.resolve(spec, backbone_metadata=metadata)
    except ValueError as error:
        raise SpecError(str(error)) from None
    raw = _merge(spec.model_dump(mode="json"), resolution.updates)
    if entry is not None:
        raw["model"]["pretrained"] = f"{entry['name']}@{entry['version']}"
    if raw["training"].get("group_by_length") is None:
        raw["training"]["group_by_length"] = family.has_length
    if task.target.has_labels and spec.task.labels is None:
        raw["task"]["labels"] = _labels(spec)
    try:
        resolved = job_spec_class(family).model_validate(raw)
    except Exception as error:  # a family's update that its own section refuses
        raise SpecError(f"resolving the spec: {error}") from None
    return ResolvedJob(
        spec=resolved, model_folder=entry["path"] if entry is not None else resolved.model.path, settings=resolution.settings,
        storage_given=storage_given, data_fingerprint=fingerprint_files(resolved.data.files()), pretrained_entry=entry,
    )


def _backbone_metadata(path: str) -> dict:
    from biomed.checkpoint import read_metadata  # torch: only when a backbone is named

    return read_metadata(path)


def _labels(spec: JobSpec) -> list[str]:
    labels = distinct_labels(spec.data.files_of("train_path"), spec.data.label_column)
    if len(labels) < 2:
        raise SpecError(f"label column {spec.data.label_column!r} of {spec.data.train_path!r} has fewer than 2 distinct labels: {labels}")
    return labels


def load_job(path, *, storage_path: str | None = None) -> ResolvedJob:
    """Read, validate and resolve a YAML spec file; `storage_path` replaces the file's own."""
    from jobs.spec import load_spec

    return resolve(load_spec(path, storage_path=storage_path))


def resolve_raw(raw: dict) -> ResolvedJob:
    """Parse and resolve a spec dict (tests, notebooks)."""
    from jobs.spec import parse_spec

    return resolve(parse_spec(raw))
