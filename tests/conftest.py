"""Shared fixtures: one real local Ray per test session, tiny planted-signal data, spec files."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import yaml

from biomed.synthetic import write_planted_text

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Tests never join (or stop) a local head the developer may have running under ~/.biomed.
os.environ["BIOMED_HOME"] = tempfile.mkdtemp(prefix="biomed-home-")


@pytest.fixture(scope="session")
def planted_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("planted")
    write_planted_text(root / "train.parquet", 480, seed=1)
    write_planted_text(root / "test.parquet", 150, seed=2)
    return root


def tiny_spec(data_dir: Path, storage: Path, **overrides) -> dict:
    """A spec dict for the tiny BERT on planted data; `overrides` replace whole sections."""
    spec = {
        "name": "planted",
        "task": {"name": "text_classification"},
        "data": {"train_path": str(data_dir / "train.parquet"), "test_path": str(data_dir / "test.parquet")},
        "model": {"backbone": "tiny-bert"},
        "training": {"epochs": 6, "batch_size_per_worker": 16, "learning_rate": 3e-3, "max_seq_length": 40, "warmup_ratio": 0.05},
        "scaling": {"num_workers": 2},
        "storage_path": str(storage),
    }
    spec.update(overrides)
    return spec


def write_spec(path: Path, spec: dict) -> Path:
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.fixture(scope="session")
def ray_cluster():
    import ray

    from cluster.connect import WORKER_ENV

    os.environ.update(WORKER_ENV)
    # The dashboard backs the State API that Ray Train V2's placement-group cleaner polls; without
    # it a trial stopped by ASHA leaks its workers' reservation and later trials starve.
    ray.init(address="local", num_cpus=2, dashboard_host="127.0.0.1", object_store_memory=200 * 1024**2, log_to_driver=True)
    yield ray
    ray.shutdown()
