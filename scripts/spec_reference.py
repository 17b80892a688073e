"""The job spec reference, written from the pydantic models themselves (docs/reference/spec.md).

Every field of every section, with its type, its default and its description: the field
descriptions are the single source of the CLI help, `biomed schema` and this page, so the page
cannot go stale. The `data:`, `model:` and `training:` sections list the common fields once and
then what each task family adds. Run by the docs build (docs/gen_pages.py); `python
scripts/spec_reference.py` prints the page.
"""

from __future__ import annotations

import sys
import typing
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pydantic import BaseModel  # noqa: E402
from pydantic_core import PydanticUndefined  # noqa: E402

INTRO = """# Job spec reference

Generated from the code (`scripts/spec_reference.py`) at every docs build. A job spec is one
YAML file; unknown keys are errors, and every error names the field and the bad value. The
`data:`, `model:` and `training:` sections are the task family's own: the common fields below,
plus the fields the family adds. `biomed schema` prints the same as a JSON schema, one arm per
family.
"""


def _type(annotation) -> str:
    text = repr(annotation) if not isinstance(annotation, type) else annotation.__name__
    for noise in ("typing.", "NoneType", "jobs.", "biomed.", "spec_sections.", "tune_spec.", "scaling_spec.", "serve_spec."):
        text = text.replace(noise, "None" if noise == "NoneType" else "")
    return text.replace("|", "\\|")


def _default(field) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
        if isinstance(value, BaseModel):
            return "(section)"
        return f"`{value!r}`"
    if field.default is PydanticUndefined:
        return "required"
    return f"`{field.default!r}`"


def _rows(model: type[BaseModel], names) -> list[str]:
    rows = []
    for name in names:
        field = model.model_fields[name]
        description = (field.description or "").replace("|", "\\|").replace("\n", " ")
        rows.append(f"| `{name}` | {_type(field.annotation)} | {_default(field)} | {description} |")
    return rows


def table(model: type[BaseModel], names=None) -> str:
    """A Markdown table of the model's fields (or the given ones)."""
    names = list(model.model_fields) if names is None else list(names)
    if not names:
        return "No fields of its own.\n"
    return "\n".join(["| field | type | default | description |", "|---|---|---|---|", *_rows(model, names)]) + "\n"


def _family_sections(section: str) -> list[str]:
    from biomed.families import families
    from biomed.spec_sections import DataSection, ModelSection, TrainingSection

    base = {"data": DataSection, "model": ModelSection, "training": TrainingSection}[section]
    out = [f"## `{section}:`\n", f"Common to every family ({base.__name__}):\n", table(base)]
    for family in families():
        own = getattr(family, f"{section}_section")
        extra = [n for n in own.model_fields if n not in base.model_fields]
        if not extra and section == "training":
            continue
        out.append(f"### `{section}:` for the {family.name} family ({', '.join(t.name for t in family.tasks)})\n")
        if section == "model" and family.backbones:
            out.append("Backbones: " + ", ".join(f"`{name}`" for name in sorted(family.backbones)) + ".\n")
        out.append(table(own, extra))
        for name in extra:  # nested sections of the family's own (data.images)
            nested = typing.get_args(own.model_fields[name].annotation) or (own.model_fields[name].annotation,)
            for sub in nested:
                if isinstance(sub, type) and issubclass(sub, BaseModel):
                    out.append(f"#### `{section}.{name}:`\n")
                    out.append(table(sub))
    return out


def render() -> str:
    """The whole reference page."""
    from jobs.pretrain_spec import PretrainSpec
    from jobs.spec import CheckpointSpec, FailureSpec, JobSpec, TaskSpec
    from jobs.scaling_spec import ScalingSpec
    from jobs.serve_spec import ServeSpec
    from jobs.tune_spec import Distribution, SchedulerSpec, TuneSpec

    parts = [INTRO, "## Top level\n", table(JobSpec), "## `task:`\n", table(TaskSpec)]
    parts += _family_sections("data") + _family_sections("model") + _family_sections("training")
    for name, model in (("scaling", ScalingSpec), ("checkpointing", CheckpointSpec), ("failure", FailureSpec), ("serve", ServeSpec), ("tune", TuneSpec)):
        parts += [f"## `{name}:`\n", table(model)]
    parts += ["### `tune.search_space` values\n", table(Distribution), "### `tune.scheduler:`\n", table(SchedulerSpec)]
    parts += ["## Pretraining specs (`biomed pretrain`)\n", table(PretrainSpec)]
    for name, field in PretrainSpec.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel) and name not in ("scaling", "checkpointing", "failure"):
            parts += [f"### pretraining `{name}:`\n", table(field.annotation)]
    return "\n".join(parts)


if __name__ == "__main__":
    print(render())
