"""Shared fixtures: one real local Ray per test session, tiny planted-signal data, spec files."""

from __future__ import annotations

import csv
import json
import os
import signal
import threading
import tempfile
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest
import yaml

from biomed.families.images.planted import planted_lesion_images
from biomed.families.molecules.planted import planted_nitro_table
from biomed.families.text.planted import write_planted_text

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
        # Not length-grouped: batches keep the classes mixed (with markers of different lengths,
        # grouped batches once held one class each: test accuracy 0.60, AUROC 1.0).
        "training": {"epochs": 6, "batch_size_per_worker": 16, "learning_rate": 3e-3, "max_seq_length": 40, "warmup_ratio": 0.05, "group_by_length": False},
        "scaling": {"num_workers": 2},
        "storage_path": str(storage),
    }
    spec.update(overrides)
    return spec


def write_spec(path: Path, spec: dict) -> Path:
    path.write_text(yaml.safe_dump(spec))
    return path


def ray_test_env() -> None:
    """The environment `biomed train` gives the embedded Ray it starts (Train's controller polls
    its workers every 0.1 s instead of 2 s), so the tests run what users run."""
    from cluster.connect import WORKER_ENV
    from cluster.ray_compat import serve_cluster_env, train_driver_env

    os.environ.update({**WORKER_ENV, **serve_cluster_env(), **train_driver_env(local=True)})
    # The local S3 endpoint (moto, tests/test_storage_uri.py) takes any keys; workers inherit
    # them from here, and no AWS lookup (instance metadata, ~/.aws) is tried.
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_EC2_METADATA_DISABLED": "true"}.items():
        os.environ.setdefault(key, value)


def start_session_ray() -> None:
    import ray

    ray_test_env()
    # The dashboard backs the State API that Ray Train V2's placement-group cleaner polls; without
    # it a trial stopped by ASHA leaks its workers' reservation and later trials starve.
    from cluster.ray_compat import job_runtime_env

    ray.init(address="local", num_cpus=2, dashboard_host="127.0.0.1", object_store_memory=200 * 1024**2, log_to_driver=True, runtime_env=job_runtime_env())


@pytest.fixture(scope="session")
def ray_cluster():
    import ray

    start_session_ray()
    yield ray
    ray.shutdown()


def epochs_done(metrics_csv: Path) -> int:
    """Epochs a Train run's rank 0 has written to its metrics.csv."""
    if not metrics_csv.is_file():
        return 0
    with metrics_csv.open() as f:
        return sum(1 for r in csv.DictReader(f) if r["kind"] == "epoch")


def our_processes(marker: str, *, recursive: bool = True) -> dict[int, psutil.Process]:
    """This test process's live descendants (direct children only unless `recursive`) whose
    command line contains `marker`, by pid. Those that exit meanwhile, and zombies (a killed
    node's process Ray has not reaped), are skipped: reading their command line raises."""
    found = {}
    for proc in psutil.Process(os.getpid()).children(recursive=recursive):
        try:
            if proc.status() != psutil.STATUS_ZOMBIE and marker in " ".join(proc.cmdline()):
                found[proc.pid] = proc
        except (psutil.NoSuchProcess, psutil.AccessDenied):  # ZombieProcess is a NoSuchProcess
            continue
    return found


def our_train_workers() -> list[psutil.Process]:
    """Ray Train worker processes of the Ray this test session started (its descendants only)."""
    return list(our_processes("RayTrainWorker").values())


def latest_committed(run_dir: Path) -> str:
    """The folder name of a Train run's latest committed checkpoint ("" before the first)."""
    # A checkpoint counts once the controller has written it into its snapshot, not when its
    # folder appears (a report in flight is lost with the worker).
    try:
        snapshot = json.loads((run_dir / "checkpoint_manager_snapshot.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return ""
    return (snapshot.get("latest_checkpoint_result") or {}).get("checkpoint_dir_name", "")


def run_killed_once(run, *, ready) -> dict:
    """`run()` (a training call) in a thread; one of its two Train workers is SIGKILLed once
    `ready()` holds (e.g. a checkpoint is committed: the kill lands at or after it). Returns what
    `run()` returned after the run recovered."""
    outcome: dict = {}
    runner = threading.Thread(target=lambda: outcome.update(summary=run()), daemon=True)
    runner.start()
    deadline = time.monotonic() + 300
    while not ready():
        assert runner.is_alive() and time.monotonic() < deadline, "training ended before the kill"
        time.sleep(0.02)
    victims = our_train_workers()
    assert len(victims) == 2
    victims[-1].send_signal(signal.SIGKILL)
    runner.join(timeout=400)
    assert not runner.is_alive(), "the killed run did not finish"
    return outcome["summary"]


def committed(run_dir: Path, prefix: str):
    """A `ready` for run_killed_once: a checkpoint whose name starts with `prefix` is committed."""
    return lambda: latest_committed(run_dir).startswith(prefix)


def cpu_placement_groups(*, settle_s: float = 15.0) -> list[dict]:
    """Placement groups still reserving CPUs, after up to `settle_s` for cleanups under way."""
    import ray

    deadline = time.monotonic() + settle_s
    while True:
        held = [
            pg for pg in ray.util.placement_group_table().values()
            if pg["state"] in ("CREATED", "PENDING", "RESCHEDULING") and any(b.get("CPU") for b in pg["bundles"].values())
        ]
        if not held or time.monotonic() > deadline:
            return held
        time.sleep(0.5)


@pytest.fixture(scope="session")
def family_dir(tmp_path_factory) -> Path:
    """Planted-signal train/test files for every non-text family (each family's `planted`)."""
    import pyarrow.parquet as pq

    from biomed.families import get_family

    root = tmp_path_factory.mktemp("families")
    makers = {
        "dna": get_family("dna").planted,
        "protein": get_family("protein").planted,
        "smiles": get_family("smiles").planted,
        "tabular": get_family("tabular").planted,
        "survival": lambda n, seed: get_family("tabular").planted(n, seed=seed, target="survival"),
    }
    for family, make in makers.items():
        pq.write_table(make(400, seed=1)[0], root / f"{family}_train.parquet")
        pq.write_table(make(150, seed=2)[0], root / f"{family}_test.parquet")
    return root


FAMILY_SPECS = {
    # family: (task, model, data columns, training overrides)
    # 6-mers, as DNABERT reads DNA: the motif is then one token (with 3-mers a tiny BERT learns it
    # from 400 rows only in part: test AUROC 0.81, and its explanations spread over the flanks).
    "dna": ("dna_classification", {"backbone": "tiny-bert", "kmer_size": 6}, {"text_column": "sequence"}, {"epochs": 12}),
    "protein": ("protein_classification", {"backbone": "tiny-bert"}, {"text_column": "sequence"}, {}),
    "smiles": ("molecule_regression", {"backbone": "tiny-bert"}, {"text_column": "smiles", "label_column": "value", "split": "scaffold"}, {}),
    "tabular": ("tabular_classification", {"backbone": "mlp"}, {"numeric_columns": ["x1", "x2", "x3", "x4"], "categorical_columns": ["site"]}, {}),
    "survival": (
        "survival", {"backbone": "mlp"},
        {"numeric_columns": ["x1", "x2", "x3"], "categorical_columns": ["stage"], "time_column": "time", "event_column": "event"},
        {"batch_size_per_worker": 32},
    ),
}


def family_spec(family: str, data_dir: Path, storage: Path, **overrides) -> dict:
    task, model, columns, training = FAMILY_SPECS[family]
    spec = {
        "name": f"planted-{family}",
        "task": {"name": task},
        "data": {"train_path": str(data_dir / f"{family}_train.parquet"), "test_path": str(data_dir / f"{family}_test.parquet"), **columns},
        "model": model,
        "training": {"epochs": 6, "batch_size_per_worker": 16, "learning_rate": 3e-3, "max_seq_length": 64, "warmup_ratio": 0.05, **training},
        "scaling": {"num_workers": 2 if family == "smiles" else 1},
        "storage_path": str(storage),
    }
    spec.update(overrides)
    return spec


@pytest.fixture(scope="session")
def family_models(ray_cluster, family_dir, tmp_path_factory) -> dict:
    """Every family trained once on its planted data and registered: {family: summary}."""
    from jobs.spec import parse_spec
    from jobs.train import train

    storage = tmp_path_factory.mktemp("family-runs")
    return {family: train(parse_spec(family_spec(family, family_dir, storage))) for family in FAMILY_SPECS}


def register_untrained_backbone(storage: Path, name: str, family: str, kind: str, texts: list[str]) -> Path:
    """A tiny real backbone in the registry as `biomed pretrain` leaves one, its tokenizer of
    `kind` trained on `texts`, its weights untrained; returns the registered folder."""
    from biomed.checkpoint import save_model_checkpoint
    from biomed.families.sequence.backbones import TINY_BERT, build_masked_lm
    from biomed.families.sequence.tokens import SequenceEncoder, TokenEncoder
    from biomed.mlm import family_tokenizer
    from jobs.registry import registry_for

    tokenizer = family_tokenizer(family, kind, texts, vocab_size=50, kmer_size=3)
    kmer = {"kmer_size": 3, "kmer_stride": 1} if kind == "kmer" else {}
    folder = storage / "staging" / name
    encoder = TokenEncoder(SequenceEncoder(input_kind=family, tokenizer=tokenizer, **kmer))
    save_model_checkpoint(build_masked_lm(TINY_BERT, vocab_size=len(tokenizer)), encoder, folder, {"kind": "backbone"})
    entry = registry_for(storage).register(name=name, model_dir=folder, record={"kind": "backbone", "family": family}, selection={"metric": "val_loss", "mode": "min", "value": 1.0})
    return Path(entry["path"])


# The planted nitro set (a nitro group among N and O distractors): the dmpnn backbone's run, shared
# by its tests and the explanation tests.
NITRO_EPOCHS = 30


@pytest.fixture(scope="session")
def nitro_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("nitro")
    pq.write_table(planted_nitro_table(360, seed=1), folder / "train.parquet")
    pq.write_table(planted_nitro_table(160, seed=2), folder / "test.parquet")
    return folder


def nitro_spec(data: Path, storage: Path, *, name: str = "nitro", workers: int = 2, **training) -> dict:
    return {
        "name": name,
        "task": {"name": "molecule_classification"},
        "data": {"train_path": str(data / "train.parquet"), "test_path": str(data / "test.parquet"), "text_column": "smiles", "label_column": "label", "split": "scaffold"},
        "model": {"backbone": "dmpnn", "depth": 3, "hidden_size": 64, "ffn_hidden_size": 64},
        "training": {"epochs": NITRO_EPOCHS, "batch_size_per_worker": 16, "warmup_ratio": 0.05, **training},
        "scaling": {"num_workers": workers},
        "checkpointing": {"num_to_keep": 1},
        "storage_path": str(storage),
    }


@pytest.fixture(scope="session")
def nitro_run(ray_cluster, nitro_dir, tmp_path_factory) -> dict:
    from jobs.train import train

    storage = tmp_path_factory.mktemp("nitro-runs")
    from jobs.spec import parse_spec

    return {"summary": train(parse_spec(nitro_spec(nitro_dir, storage))), "storage": storage}


# Planted lesion images: the small CNN's run (and a text model beside it), shared by the image
# training tests and the explanation tests.
@pytest.fixture(scope="session")
def lesion_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("lesions")
    pq.write_table(planted_lesion_images(folder / "train", 320, seed=1), folder / "train" / "train.parquet")
    pq.write_table(planted_lesion_images(folder / "test", 160, seed=2), folder / "test" / "test.parquet")
    return folder


def lesion_spec(folder: Path, storage: Path, **training) -> dict:
    return {
        "name": "lesions",
        "task": {"name": "image_classification"},
        "data": {"train_path": str(folder / "train" / "train.parquet"), "test_path": str(folder / "test" / "test.parquet")},
        "model": {"backbone": "small-cnn"},
        "training": {"epochs": 30, "batch_size_per_worker": 16, "learning_rate": 3e-3, "warmup_ratio": 0.05, "augment_strength": 0.5, **training},
        "scaling": {"num_workers": 2},
        "checkpointing": {"num_to_keep": 1},
        "storage_path": str(storage),
    }


@pytest.fixture(scope="session")
def lesion_run(ray_cluster, lesion_dir, planted_dir, tmp_path_factory) -> dict:
    from jobs.train import train

    from jobs.spec import parse_spec

    storage = tmp_path_factory.mktemp("lesion-runs")
    summary = train(parse_spec(lesion_spec(lesion_dir, storage)))
    # Mean-pooled, as the text family's pretrained backbone reads: the explanation tests measure
    # it (docs/trust.md gives the figure for [CLS] pooling too).
    text = train(parse_spec(tiny_spec(planted_dir, storage, model={"backbone": "tiny-bert", "pooling": "mean"}, scaling={"num_workers": 1})))
    return {"summary": summary, "text": text, "storage": storage}
