"""The docs that are written from the code: the spec reference names every field of every
section and family, the benchmark page shows the newest saved run of each benchmark, and the
README stays a front door."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import bench_table  # noqa: E402
import spec_reference  # noqa: E402


def _fields(model, seen=None) -> set[str]:
    """Every field name of a pydantic model and of the models it nests."""
    from pydantic import BaseModel
    import typing

    seen = set() if seen is None else seen
    names = set()
    for name, field in model.model_fields.items():
        names.add(name)
        for sub in (field.annotation, *typing.get_args(field.annotation)):
            if isinstance(sub, type) and issubclass(sub, BaseModel) and sub not in seen:
                seen.add(sub)
                names |= _fields(sub, seen)
    return names


def test_the_spec_reference_names_every_field_of_every_family_and_section():
    from biomed.families import families
    from jobs.pretrain_spec import PretrainSpec
    from jobs.spec import job_spec_class

    page = spec_reference.render()
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", page, flags=re.M))
    for family in families():
        missing = _fields(job_spec_class(family)) - documented
        assert not missing, f"{family.name}: {sorted(missing)}"
        assert f"for the {family.name} family" in page
    assert not _fields(PretrainSpec) - documented
    # Every field's description is there, word for word.
    from biomed.families.dna import DnaModelFields

    assert DnaModelFields.model_fields["kmer_size"].description in page


def test_the_benchmark_page_shows_the_newest_run_of_each_benchmark(tmp_path, monkeypatch):
    for date, value in (("2026-01-01", 1.0), ("2026-02-01", 2.0)):
        folder = tmp_path / "demo"
        folder.mkdir(exist_ok=True)
        record = {"bench": "demo", "date": date, "commit": "abc", "command": "python bench/demo.py", "machine": {"cores": 2, "gpu": None}, "figures": {"ratio": value}}
        (folder / f"{date}-abc.json").write_text(json.dumps(record))
    monkeypatch.setattr(bench_table, "RESULTS", tmp_path)
    page = bench_table.render()
    assert "| ratio | 2 |" in page and "| ratio | 1 |" not in page
    assert "2 saved run(s)" in page and "python bench/demo.py" in page
    # The saved results in the repository render too, one section per benchmark.
    monkeypatch.undo()
    shipped = bench_table.render()
    for folder in (ROOT / "bench" / "results").iterdir():
        assert f"### `{folder.name}`" in shipped


def test_the_readme_is_a_front_door():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    assert readme.count("bash scripts/") >= 2 and "bash scripts/quickstart.sh" in readme and "bash scripts/test.sh" in readme
    assert not re.search(r"\d+m\d+s|on a day when|latest run|earlier run", readme)  # no run logs
    for target in re.findall(r"\]\(([^)#]+)", readme):
        if not target.startswith("http"):
            assert (ROOT / target).exists(), target


def test_the_version_is_the_changelog_s_latest(capsys):
    import pytest

    from jobs.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["--version"])
    version = capsys.readouterr().out.split()[-1]
    assert f"## {version}" in (ROOT / "CHANGELOG.md").read_text()
