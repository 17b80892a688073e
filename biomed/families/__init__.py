"""The closed registry of task families, and the task table built from them.

Built-in families are listed below, one import and one registration line each. A new family is
one folder (or module) with an object that follows `biomed.family.Family`, registered with
`register_family(family)`: the spec, the run, the registry, `biomed predict` and the HTTP
endpoint then ask it, by the name its checkpoints record. User YAML names a task; it never names
code to import.

Families registered at run time (a plugin, a test) travel with a run to its Ray Train workers and
Serve replicas (`extra_families`), which register them again before they read a spec or load a
checkpoint.
"""

from __future__ import annotations

from biomed.family import Family, Task
from biomed.families.dna import DNA
from biomed.families.images import IMAGES
from biomed.families.molecules import MOLECULES
from biomed.families.protein import PROTEIN
from biomed.families.tabular import TABULAR
from biomed.families.text import TEXT

_BUILT_IN: tuple[Family, ...] = (TEXT, DNA, PROTEIN, MOLECULES, TABULAR, IMAGES)

_FAMILIES: dict[str, Family] = {}
_TASKS: dict[str, Task] = {}
_EXTRA: dict[str, Family] = {}


def register_family(family: Family) -> Family:
    """Add a family and its tasks to the registry (again: the same object is a no-op).

    Raises ValueError when its name or one of its task names is taken by another family."""
    known = _FAMILIES.get(family.name)
    if known is family:
        return family
    if known is not None:
        raise ValueError(f"a task family named {family.name!r} is already registered")
    taken = [t.name for t in family.tasks if t.name in _TASKS]
    if taken:
        raise ValueError(f"task {taken[0]!r} of family {family.name!r} is already registered by family {_TASKS[taken[0]].family.name!r}")
    _FAMILIES[family.name] = family
    for definition in family.tasks:
        _TASKS[definition.name] = Task.of(family, definition)
    if family not in _BUILT_IN:
        _EXTRA[family.name] = family
    return family


def get_family(name: str) -> Family:
    """A family by the name its checkpoints and specs record; the error lists the known ones."""
    try:
        return _FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown task family {name!r}; known families: {sorted(_FAMILIES)}") from None


def families() -> list[Family]:
    """Every registered family, built-in ones first."""
    return list(_FAMILIES.values())


def extra_families() -> list[Family]:
    """The families registered at run time (not built in), to send to Ray workers and replicas."""
    return list(_EXTRA.values())


def register_all(extra: list[Family] | None) -> None:
    """Register the families a driver sent (a worker's or replica's first step)."""
    for family in extra or ():
        register_family(family)


def tasks() -> dict[str, Task]:
    """The task table: every registered family × target, by task name."""
    return dict(_TASKS)


def get_task(name: str) -> Task:
    """Look a task up by name; the error lists the known ones."""
    try:
        return _TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; known tasks: {sorted(_TASKS)}") from None


def load_validator(payload: dict):
    """The input check a checkpoint recorded (biomed.json "validator"), rebuilt by the family it names."""
    return get_family(payload["kind"]).load_validator(payload)


def backbone_owners(name: str) -> list[str]:
    """The families that offer a backbone."""
    return [f.name for f in _FAMILIES.values() if name in f.backbones]


def backbone_names() -> list[str]:
    """Every backbone some family offers."""
    return sorted({name for family in _FAMILIES.values() for name in family.backbones})


for _family in _BUILT_IN:
    register_family(_family)
