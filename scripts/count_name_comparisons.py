"""Count the comparisons against a family, task, target or backbone name in the service's code.

A comparison is an `==`, `!=`, `in` or `not in` with a string constant (or a tuple, list or set of
them) that names a registered family, task, target kind or backbone. Outside biomed/families/
the code should ask a family instead (issue 32: at most 10, from 79 before the family folders).

    python scripts/count_name_comparisons.py [--all] [--json]

`--all` lists every comparison found, inside the family folders too. The last line is one JSON
object: {"outside_families": N, "inside_families": M, "by_module": {...}}.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("biomed", "jobs", "cluster", "serving")
FAMILIES_DIR = Path("biomed") / "families"


def registered_names() -> set[str]:
    """Every family, task, target kind and backbone name the registry knows, plus the names of the
    family folders (`molecules`, `images`; not `sequence`, the sequence families' shared code)."""
    sys.path.insert(0, str(ROOT))
    from biomed.families import backbone_names, families, tasks
    from biomed.targets import TARGETS

    names = {f.name for f in families()} | set(tasks()) | set(TARGETS) | set(backbone_names())
    folders = {p.name for p in (ROOT / FAMILIES_DIR).iterdir() if p.is_dir() and not p.name.startswith("_")} - {"sequence"}
    return names | folders | {"molecule"}


def _constants(node: ast.AST) -> set[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return {e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
    return set()


def comparisons(path: Path, names: set[str]) -> list[tuple[int, str]]:
    """(line, source) of each comparison against a name in one module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare) and any(_constants(side) & names for side in (node.left, *node.comparators)):
            found.append((node.lineno, ast.unparse(node)))
    return sorted(found)


def count(*, show_all: bool = False) -> dict:
    names = registered_names()
    outside, inside, by_module = 0, 0, {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT)
            hits = comparisons(path, names)
            in_families = FAMILIES_DIR in relative.parents
            if hits:
                by_module[str(relative)] = len(hits)
            if in_families:
                inside += len(hits)
            else:
                outside += len(hits)
            if hits and (show_all or not in_families):
                for line, source in hits:
                    print(f"{relative}:{line}: {source}")
    return {"outside_families": outside, "inside_families": inside, "by_module": by_module}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="list the comparisons inside biomed/families/ too")
    args = parser.parse_args()
    print(json.dumps(count(show_all=args.all)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
