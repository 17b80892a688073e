"""Driver side of a fine-tuning job: validate, run TorchTrainer, score, register.

`train(spec)` is the public entry point behind `biomed train`; it returns the run summary.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import ray.train

from biomed.checkpoint import Predictor
from biomed.data import fingerprint_files
from biomed.log import get_logger
from biomed.tasks import get_task
from cluster.capacity import wait_for_capacity
from cluster.storage import check_storage_shared
from cluster.connect import connect
from jobs.curves import run_learning_curve
from jobs.errors import TrainingFailed
from jobs.registry import registry_for
from jobs.run_storage import checkpoint_location, display, local_checkpoint, run_location
from jobs.spec import JobSpec
from jobs.scoring import first_validation_input, score_test
from jobs.splits import Splits, load_splits
from jobs.trainer import build_trainer, run_name, worker_demand
from jobs.worker import METRICS_FILE, MODEL_DIR

log = get_logger(__name__)


def best_report(reports: list[dict], *, key: str, mode: str) -> dict:
    """The report with the best `key`; ties (common on small validation sets) go to the later epoch."""
    sign = 1.0 if mode == "max" else -1.0
    return max(reports, key=lambda r: (sign * r[key], r["epoch"]))


def best_checkpoint(result, spec: JobSpec) -> tuple[ray.train.Checkpoint, dict]:
    """The kept checkpoint with the best validation metric (from the committed snapshot)."""
    key = f"val_{spec.metric}"
    candidates = [(ckpt, m) for ckpt, m in result.best_checkpoints if key in m and not np.isnan(m[key])]
    if not candidates:
        raise TrainingFailed(f"run produced no checkpoint with a finite {key}")
    metrics = best_report([m for _, m in candidates], key=key, mode=spec.mode)
    ckpt = next(c for c, m in candidates if m is metrics)
    return ckpt, metrics


def score_and_register(
    spec: JobSpec, splits: Splits, *, ckpt_dir: Path, val_metrics: dict, fingerprint: str, name: str, lineage: dict | None = None,
    source_checkpoint: str | None = None,
) -> dict:
    """Score a selected checkpoint (a local folder) on the test set beside the baseline and
    register it; `source_checkpoint` is where the run keeps it (default: `ckpt_dir`)."""
    predictor = Predictor(directory=ckpt_dir / MODEL_DIR, batch_size=spec.training.eval_batch_size)
    test = score_test(spec, splits, predictor)
    key = f"val_{spec.metric}"
    record = {
        "task": spec.task.name,
        "labels": spec.task.labels,
        "spec_hash": spec.spec_hash(),
        "data_fingerprint": fingerprint,
        "run_name": name,
        "run_path": display(run_location(spec.storage_path, name)),
        "source_checkpoint": source_checkpoint or str(ckpt_dir),
        "val_metrics": {k: v for k, v in val_metrics.items() if k.startswith("val_")},
        "selected_val_metrics": test["validation"],
        "test_metrics": test.get("model"),
        "baseline": get_task(spec.task.name).baseline,
        "baseline_val_metrics": test["baseline_validation"],
        "baseline_test_metrics": test.get("baseline"),
        # The baseline guard: decided on validation by the selection metric; a version that
        # does not beat its baseline is never made best automatically (jobs/registry.py).
        "beats_baseline": test["beats_baseline"],
        "guard": test["guard"],
        **({"model_test_metrics_on_baseline_rows": test["model_on_baseline_rows"]} if "model_on_baseline_rows" in test else {}),
        "spec": spec.model_dump(mode="json"),
        # The golden check's input: the first validation example, already normalised.
        "probe": predictor.probe(first_validation_input(spec, splits)),
        **(lineage or {}),
    }
    selection = {"metric": key, "mode": spec.mode, "value": val_metrics[key]}
    entry = registry_for(spec.registry_storage).register(name=spec.name, model_dir=ckpt_dir / MODEL_DIR, record=record, selection=selection)
    return {
        "registered": {"version": entry["version"], "path": entry["path"], "is_best": entry["is_best"], "best_reason": entry.get("best_reason")},
        "selection": selection,
        "val_metrics": record["val_metrics"],
        "selected_val_metrics": record["selected_val_metrics"],
        "test_metrics": record["test_metrics"],
        "baseline": record["baseline"],
        "baseline_val_metrics": record["baseline_val_metrics"],
        "baseline_test_metrics": record["baseline_test_metrics"],
        "beats_baseline": record["beats_baseline"],
        "guard": record["guard"],
    }


def backbone_lineage(spec: JobSpec) -> dict:
    """What a fine-tune records of the pretrained backbone it started from (empty: none)."""
    if spec.model.pretrained is None:
        return {}
    entry = registry_for(spec.registry_storage).get(spec.model.pretrained)
    keys = ("name", "version", "path", "family", "corpus_fingerprint", "steps", "run_name", "val_metrics")
    return {"pretrained_backbone": {k: entry.get(k) for k in keys}}


def train(spec: JobSpec, *, address: str | None = None) -> dict:
    """Fine-tune per the spec on Ray Train, register the best checkpoint, return a summary."""
    started = time.perf_counter()
    splits = load_splits(spec)  # bad data fails here, before any cluster or worker starts
    fingerprint = fingerprint_files(spec.data.files())
    name = run_name(spec, fingerprint)
    run_dir = run_location(spec.storage_path, name)
    connecting = time.perf_counter()
    resources = connect(address=address)
    log.info("run %s → %s on %s", name, display(run_dir), resources)
    check_storage_shared(spec.storage_path, given=spec.storage_given)
    wait_for_capacity(worker_demand(spec.scaling), fixed_size=resources["fixed_size"])
    fitting = time.perf_counter()
    try:
        result = build_trainer(spec, name=name, streams=splits.streams()).fit()
    except ray.train.TrainingFailedError as error:
        raise TrainingFailed(f"run {name} failed after {spec.failure.max_failures} retries: {error}") from error
    fitted = time.perf_counter()
    ckpt, val_metrics = best_checkpoint(result, spec)
    source = checkpoint_location(ckpt)
    log.info("best checkpoint %s (val_%s=%.4f); scoring the test set", display(source), spec.metric, val_metrics[f"val_{spec.metric}"])
    curve_png = run_learning_curve(run_dir)
    with local_checkpoint(ckpt) as ckpt_dir:
        outcome = score_and_register(
            spec, splits, ckpt_dir=ckpt_dir, val_metrics=val_metrics, fingerprint=fingerprint, name=name, lineage=backbone_lineage(spec), source_checkpoint=source,
        )
    return {
        "name": spec.name,
        "run_name": name,
        "run_path": display(run_dir),
        **outcome,
        "data": splits.report,
        "metrics_csv": display(run_location(run_dir, METRICS_FILE)),
        "learning_curve_png": display(curve_png) if curve_png else None,
        "workers": workers_of(result.metrics or {}),
        # Start-up accounting of the attempt that finished (bench/train_overhead.py uses it).
        "last_attempt": {k: (result.metrics or {}).get(k) for k in ("train_fn_started_at", "setup_seconds")},
        "timing_s": {
            "validate_data": round(connecting - started, 3),
            "connect": round(fitting - connecting, 3),
            "fit": round(fitted - fitting, 3),
            "score_and_register": round(time.perf_counter() - fitted, 3),
            "total": round(time.perf_counter() - started, 3),
        },
    }


def workers_of(metrics: dict) -> dict:
    """The ranks of the attempt that finished: how many, on which nodes (rank order), on what device."""
    return {
        "world_size": metrics.get("world_size"),
        "node_ids": (metrics.get("worker_node_ids") or "").split(","),
        "device": metrics.get("worker_device"),
        "collective_backend": metrics.get("collective_backend"),
    }
