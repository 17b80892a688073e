"""Checkpoint registry: versioned copies of HF model folders with their lineage.

Layout under `<storage>/registry/<name>/`: `index.json` (all versions and the best pointer) and
one folder per version `v0001/model/...`. A version folder is copied under a temporary name
and renamed into place; index.json is replaced atomically after it. A crash at any point leaves
the previous index readable and no half-copied version visible.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

INDEX_FILE = "index.json"
# The registry under a storage path: runs write there, `models`, `predict` and Serve read it.
REGISTRY_DIR = "registry"
# The one model-name rule (the spec's `name`, the registry's folders, Serve's routes): no '/', no
# leading '.', so a name can never leave the registry folder.
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
# A reference: 'name' (its best version) or 'name@3'.
REF_PATTERN = re.compile(NAME_PATTERN.pattern + r"(@[0-9]{1,9})?")


class RegistryError(LookupError):
    """A model name or version the registry does not hold."""


def _write_json_atomic(path: Path, payload: dict) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=2, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def registry_for(storage_path: str | Path) -> "Registry":
    """The registry of a storage path (`<storage>/registry`)."""
    return Registry(root=Path(storage_path).expanduser().resolve() / REGISTRY_DIR)


def parse_ref(ref: str) -> tuple[str, int | None]:
    """'name' or 'name@3' → (name, version or None)."""
    name, _, version = ref.partition("@")
    if not version:
        return name, None
    if not version.isdigit():
        raise RegistryError(f"bad model reference {ref!r}: the version after '@' must be a number")
    return name, int(version)


def better(value: float, than: float, mode: str) -> bool:
    """Whether `value` is strictly better than `than` under `mode` (max or min)."""
    return value > than if mode == "max" else value < than


class Registry:
    """Versions of fine-tuned checkpoints per model name, with a 'best' pointer per name."""

    def __init__(self, *, root: str | Path):
        self.root = Path(root)

    def _model_dir(self, name: str) -> Path:
        if not NAME_PATTERN.fullmatch(name):
            raise RegistryError(f"bad model name {name!r}: 1-63 lower-case letters, digits, '.', '_' or '-'")
        return self.root / name

    @contextlib.contextmanager
    def _locked(self):
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _index(self, name: str) -> dict:
        path = self._model_dir(name) / INDEX_FILE
        if not path.is_file():
            return {"name": name, "versions": [], "best": None}
        return json.loads(path.read_text())

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / INDEX_FILE).is_file())

    def versions(self, name: str) -> list[dict]:
        return self._index(name)["versions"]

    def summary(self) -> list[dict]:
        rows = []
        for name in self.names():
            index = self._index(name)
            best = next((v for v in index["versions"] if v["version"] == index["best"]), None)
            rows.append(
                {
                    "name": name,
                    # "model" (fine-tuned, predicts) or "backbone" (pretrained, for fine-tuning from).
                    "kind": (best or index["versions"][-1]).get("kind", "model") if index["versions"] else "model",
                    "num_versions": len(index["versions"]),
                    "latest_version": index["versions"][-1]["version"] if index["versions"] else None,
                    "best_version": index["best"],
                    "best_selection": best["selection"] if best else None,
                    "best_test_metrics": best.get("test_metrics") if best else None,
                }
            )
        return rows

    def get(self, ref: str) -> dict:
        """An entry by 'name' (its best version) or 'name@version'."""
        name, version = parse_ref(ref)
        index = self._index(name)
        if not index["versions"]:
            raise RegistryError(f"no model named {name!r} in {self.root} (known: {self.names()})")
        if version is None and index["best"] is None:
            raise RegistryError(
                f"model {name!r} has no best version: none of versions {[v['version'] for v in index['versions']]} beat its baseline; "
                f"`biomed models promote {name}@VERSION --force` makes one best, or name the version ({name}@VERSION)"
            )
        wanted = index["best"] if version is None else version
        for entry in index["versions"]:
            if entry["version"] == wanted:
                return entry
        raise RegistryError(f"model {name!r} has no version {wanted} (versions: {[v['version'] for v in index['versions']]})")

    def register(self, *, name: str, model_dir: str | Path, record: dict, selection: dict, extra_files: dict[str, bytes] | None = None) -> dict:
        """Copy model_dir in as a new version (or return the version that already holds it);
        `extra_files` are written beside it (what registration adds: the conformal scores).

        `selection` is {"metric", "mode", "value"}; the best pointer moves only to a version
        that is strictly better on the same metric and mode, and never to one whose record says
        it did not beat its classical baseline (`beats_baseline` false; `promote(force=True)`
        can still make it best).
        """
        model_dir = Path(model_dir)
        with self._locked():
            target = self._model_dir(name)
            target.mkdir(parents=True, exist_ok=True)
            index = self._index(name)
            for entry in index["versions"]:
                if entry.get("source_checkpoint") == record.get("source_checkpoint") and entry.get("spec_hash") == record.get("spec_hash"):
                    return {**entry, "already_registered": True, "is_best": index["best"] == entry["version"]}
            on_disk = [int(p.name[1:]) for p in target.glob("v[0-9]*") if p.name[1:].isdigit()]
            version = max([v["version"] for v in index["versions"]] + on_disk + [0]) + 1
            staging = Path(tempfile.mkdtemp(dir=target, prefix=".staging-"))
            try:
                shutil.copytree(model_dir, staging / "model")
                for file_name, data in (extra_files or {}).items():
                    (staging / "model" / file_name).write_bytes(data)
                final = target / f"v{version:04d}"
                os.rename(staging, final)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            entry = {
                **record,
                "name": name,
                "version": version,
                "path": str(final / "model"),
                "selection": selection,
                "registered_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            }
            best = next((v for v in index["versions"] if v["version"] == index["best"]), None)
            moved, reason = self._should_move(best, selection, guard=record.get("guard") if record.get("beats_baseline") is False else None)
            index["versions"].append(entry)
            if moved:
                index["best"] = version
            _write_json_atomic(target / INDEX_FILE, index)
            return {**entry, "is_best": moved, "best_reason": reason}

    @staticmethod
    def _should_move(best: dict | None, selection: dict, *, guard: dict | None = None) -> tuple[bool, str]:
        if guard is not None:
            return False, f"not made best: {losing_line(guard)}"
        if best is None:
            return True, "first version"
        old = best["selection"]
        if (old["metric"], old["mode"]) != (selection["metric"], selection["mode"]):
            return False, f"best kept: selected by {old['metric']}/{old['mode']}, not comparable with {selection['metric']}/{selection['mode']}"
        if better(selection["value"], old["value"], selection["mode"]):
            return True, f"{selection['metric']} {selection['value']:.4f} beats {old['value']:.4f} (v{best['version']})"
        return False, f"best kept: {selection['metric']} {selection['value']:.4f} does not beat {old['value']:.4f} (v{best['version']})"

    def promote(self, ref: str, *, force: bool = False) -> dict:
        """Make NAME@VERSION the best version. A version that did not beat its classical
        baseline needs `force`; every promotion is recorded in index.json (who won, and whether forced)."""
        name, version = parse_ref(ref)
        if version is None:
            raise RegistryError(f"promote needs a version: {name}@VERSION (versions: {[v['version'] for v in self.versions(name)]})")
        with self._locked():
            index = self._index(name)
            entry = next((v for v in index["versions"] if v["version"] == version), None)
            if entry is None:
                raise RegistryError(f"model {name!r} has no version {version} (versions: {[v['version'] for v in index['versions']]})")
            if entry.get("beats_baseline") is False and not force:
                raise RegistryError(f"{name}@{version} did not beat its baseline ({losing_line(entry['guard'])}); pass --force to make it best anyway")
            previous = index["best"]
            index["best"] = version
            index.setdefault("promotions", []).append({
                "version": version, "previous_best": previous, "forced": bool(force and entry.get("beats_baseline") is False),
                "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            })
            _write_json_atomic(self._model_dir(name) / INDEX_FILE, index)
        return {**entry, "is_best": True, "previous_best": previous}


def losing_line(guard: dict) -> str:
    """One plain line: the model's validation score against its baseline's, both figures."""
    return (
        f"validation {guard['metric']} {guard['model']:.4f} does not beat the baseline {guard['baseline_name']}'s {guard['baseline']:.4f} "
        f"({'higher' if guard['mode'] == 'max' else 'lower'} is better)"
    )
