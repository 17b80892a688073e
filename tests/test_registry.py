"""Registry: versions, lineage, a best pointer that never moves to a worse checkpoint, atomicity."""

from __future__ import annotations

import json
import shutil

import pytest

from jobs.registry import Registry, RegistryError


def _model(tmp_path, tag: str):
    folder = tmp_path / f"ckpt-{tag}"
    folder.mkdir()
    (folder / "model.safetensors").write_text(tag)
    (folder / "config.json").write_text("{}")
    return folder


def _register(registry, tmp_path, tag, value, mode="max"):
    return registry.register(
        name="m",
        model_dir=_model(tmp_path, tag),
        record={"source_checkpoint": f"/runs/{tag}", "spec_hash": "h"},
        selection={"metric": "val_macro_f1", "mode": mode, "value": value},
    )


def test_versions_and_best_pointer_moves_only_when_better(tmp_path):
    registry = Registry(root=tmp_path / "registry")
    first = _register(registry, tmp_path, "a", 0.70)
    worse = _register(registry, tmp_path, "b", 0.60)
    tie = _register(registry, tmp_path, "c", 0.70)
    better = _register(registry, tmp_path, "d", 0.80)
    assert [e["version"] for e in (first, worse, tie, better)] == [1, 2, 3, 4]
    assert (first["is_best"], worse["is_best"], tie["is_best"], better["is_best"]) == (True, False, False, True)
    assert "does not beat" in worse["best_reason"]
    assert registry.get("m")["version"] == 4
    assert registry.get("m@2")["selection"]["value"] == 0.60
    assert (tmp_path / "registry/m/v0002/model/model.safetensors").read_text() == "b"


def test_lower_is_better_mode(tmp_path):
    registry = Registry(root=tmp_path / "registry")
    _register(registry, tmp_path, "a", 0.5, mode="min")
    assert not _register(registry, tmp_path, "b", 0.9, mode="min")["is_best"]
    assert _register(registry, tmp_path, "c", 0.1, mode="min")["is_best"]


def test_same_checkpoint_registers_once(tmp_path):
    registry = Registry(root=tmp_path / "registry")
    _register(registry, tmp_path, "a", 0.7)
    again = registry.register(
        name="m", model_dir=tmp_path / "ckpt-a", record={"source_checkpoint": "/runs/a", "spec_hash": "h"},
        selection={"metric": "val_macro_f1", "mode": "max", "value": 0.7},
    )
    assert again["already_registered"] and len(registry.versions("m")) == 1


def test_unknown_refs_are_clear(tmp_path):
    registry = Registry(root=tmp_path / "registry")
    with pytest.raises(RegistryError, match="no model named 'x'"):
        registry.get("x")
    _register(registry, tmp_path, "a", 0.7)
    with pytest.raises(RegistryError, match="no version 9"):
        registry.get("m@9")
    with pytest.raises(RegistryError, match="must be a number"):
        registry.get("m@latest")


def test_crash_while_copying_leaves_previous_registry_intact(tmp_path, monkeypatch):
    registry = Registry(root=tmp_path / "registry")
    _register(registry, tmp_path, "a", 0.7)
    before = (tmp_path / "registry/m/index.json").read_text()
    real_copytree = shutil.copytree

    def copy_then_crash(src, dst, **kw):
        shutil.copy2(src, dst)  # one file lands, then the disk fills up
        raise OSError("disk full")

    monkeypatch.setattr(shutil, "copytree", lambda src, dst, **kw: real_copytree(src, dst, copy_function=copy_then_crash))
    with pytest.raises(OSError, match="disk full"):
        _register(registry, tmp_path, "b", 0.9)
    monkeypatch.undo()
    assert (tmp_path / "registry/m/index.json").read_text() == before
    assert sorted(p.name for p in (tmp_path / "registry/m").iterdir()) == ["index.json", "v0001"]
    assert _register(registry, tmp_path, "c", 0.9)["version"] == 2


def test_crash_while_writing_index_keeps_old_index(tmp_path, monkeypatch):
    registry = Registry(root=tmp_path / "registry")
    _register(registry, tmp_path, "a", 0.7)
    import jobs.registry as reg

    def crash(*a, **k):
        raise OSError("power cut")

    monkeypatch.setattr(reg.os, "replace", crash)
    with pytest.raises(OSError, match="power cut"):
        _register(registry, tmp_path, "b", 0.9)
    monkeypatch.undo()
    index = json.loads((tmp_path / "registry/m/index.json").read_text())
    assert [v["version"] for v in index["versions"]] == [1] and index["best"] == 1
    assert not list((tmp_path / "registry/m").glob(".index.json.*"))
    # The orphaned folder of the failed attempt is never reused for another checkpoint.
    assert _register(registry, tmp_path, "c", 0.9)["version"] == 3
