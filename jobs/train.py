"""A fine-tuning run (`biomed train`): the job the lifecycle (jobs/lifecycle.py) runs.

`train(spec)` is the public entry point; it resolves the spec once (jobs/resolve.py), runs the
`FineTuneJob` through the lifecycle, and returns the run summary.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from biomed.checkpoint import Predictor
from biomed.conformal import CONFORMAL_FILE, RECORDED_ALPHAS, calibrate, coverage
from biomed.log import get_logger
from jobs.curves import run_learning_curve
from jobs.errors import TrainingFailed
from jobs.lifecycle import HookCaller, RunHooks, RunInfo, register, run
from jobs.resolve import ResolvedJob, resolve
from jobs.run_storage import checkpoint_location, display, local_checkpoint, run_location
from jobs.scoring import first_validation_input, score_test
from jobs.spec import JobSpec
from jobs.splits import Splits, load_splits
from jobs.trainer import build_trainer
from jobs.worker import METRICS_FILE, MODEL_DIR

log = get_logger(__name__)


def best_report(reports: list[dict], *, key: str, mode: str) -> dict:
    """The report with the best `key`; ties (common on small validation sets) go to the later epoch."""
    sign = 1.0 if mode == "max" else -1.0
    return max(reports, key=lambda r: (sign * r[key], r["epoch"]))


def best_checkpoint(result, spec: JobSpec):
    """The kept checkpoint with the best validation metric (from the committed snapshot)."""
    key = f"val_{spec.metric}"
    candidates = [(ckpt, m) for ckpt, m in result.best_checkpoints if key in m and not np.isnan(m[key])]
    if not candidates:
        raise TrainingFailed(f"run produced no checkpoint with a finite {key}")
    metrics = best_report([m for _, m in candidates], key=key, mode=spec.mode)
    ckpt = next(c for c, m in candidates if m is metrics)
    return ckpt, metrics


def score_and_register(
    job: ResolvedJob, splits: Splits, *, info: RunInfo, ckpt_dir: Path, val_metrics: dict, caller: HookCaller, lineage: dict | None = None,
    source_checkpoint: str | None = None,
) -> dict:
    """Score a selected checkpoint (a local folder) on the test set beside the baseline and
    register it; `source_checkpoint` is where the run keeps it (default: `ckpt_dir`)."""
    spec = job.spec
    predictor = Predictor(directory=ckpt_dir / MODEL_DIR, batch_size=spec.training.eval_batch_size)
    test = score_test(spec, splits, predictor)
    calibration, conformal = calibrate_on(job.task.target, test.pop("predicted"))
    key = f"val_{spec.metric}"
    record = {
        "task": spec.task.name,
        "labels": spec.task.labels,
        "spec_hash": job.spec_hash(),
        "data_fingerprint": job.data_fingerprint,
        "run_name": info.run_name,
        "run_path": display(run_location(spec.storage_path, info.run_name)),
        "source_checkpoint": source_checkpoint or str(ckpt_dir),
        "val_metrics": {k: v for k, v in val_metrics.items() if k.startswith("val_")},
        "selected_val_metrics": test["validation"],
        "test_metrics": test.get("model"),
        "baseline": job.task.baseline,
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
        "conformal": conformal,
        **(lineage or {}),
    }
    selection = {"metric": key, "mode": spec.mode, "value": val_metrics[key]}
    extra = {CONFORMAL_FILE: calibration.to_json().encode()} if calibration is not None else None
    entry = register(info, registry_storage=spec.registry_storage, model_dir=ckpt_dir / MODEL_DIR, record=record, selection=selection, caller=caller, extra_files=extra)
    return {
        "registered": {"version": entry["version"], "path": entry["path"], "is_best": entry["is_best"], "best_reason": entry.get("best_reason")},
        "selection": selection,
        **{k: record[k] for k in ("val_metrics", "selected_val_metrics", "test_metrics", "baseline", "baseline_val_metrics", "baseline_test_metrics", "beats_baseline", "guard", "conformal")},
    }


def calibrate_on(target, predicted: dict):
    """Split-conformal calibration on the validation predictions (scores only, never inputs) and
    its empirical coverage on the test rows at the recorded levels; (None, unsupported) for a
    target without a conformal score (survival)."""
    calibration = calibrate(target, *predicted["validation"])
    if calibration is None:
        return None, {"supported": False, "reason": "survival risk scores have no conformal set"}
    summary = {"supported": True, "method": calibration.method, "calibration_rows": len(calibration.scores)}
    if "test" in predicted:
        summary["test_coverage"] = [coverage(target, calibration, *predicted["test"], alpha) for alpha in RECORDED_ALPHAS]
    return calibration, summary


def backbone_lineage(job: ResolvedJob) -> dict:
    """What a fine-tune records of the pretrained backbone it started from (empty: none)."""
    entry = job.pretrained_entry
    if entry is None:
        return {}
    keys = ("name", "version", "path", "family", "corpus_fingerprint", "steps", "run_name", "val_metrics")
    return {"pretrained_backbone": {k: entry.get(k) for k in keys}}


class FineTuneJob:
    """A resolved job as the lifecycle runs it: its data pass, its TorchTrainer, and what
    happens after: the best checkpoint scored beside the baseline and registered."""

    def __init__(self, job: ResolvedJob):
        self.job, self.spec, self.storage_given = job, job.spec, job.storage_given
        self.run_dir = run_location(job.spec.storage_path, job.run_name)
        self.info = RunInfo(kind="train", name=job.spec.name, run_name=job.run_name, run_path=display(self.run_dir))

    def prepare(self) -> None:
        self.splits = load_splits(self.job)  # bad data fails here, before any cluster or worker starts

    def trainer(self, callbacks: list):
        return build_trainer(self.spec, name=self.job.run_name, payload={"job": self.job.to_dict()}, callbacks=callbacks, streams=self.splits.streams())

    def finish(self, result, caller: HookCaller) -> dict:
        ckpt, val_metrics = best_checkpoint(result, self.spec)
        source = checkpoint_location(ckpt)
        log.info("best checkpoint %s (val_%s=%.4f); scoring the test set", display(source), self.spec.metric, val_metrics[f"val_{self.spec.metric}"])
        curve_png = run_learning_curve(self.run_dir)
        with local_checkpoint(ckpt) as ckpt_dir:
            outcome = score_and_register(
                self.job, self.splits, info=self.info, ckpt_dir=ckpt_dir, val_metrics=val_metrics, caller=caller,
                lineage=backbone_lineage(self.job), source_checkpoint=source,
            )
        metrics = result.metrics or {}
        return {
            "name": self.spec.name,
            "run_name": self.job.run_name,
            "run_path": display(self.run_dir),
            **outcome,
            "data": self.splits.report,
            "metrics_csv": display(run_location(self.run_dir, METRICS_FILE)),
            "learning_curve_png": display(curve_png) if curve_png else None,
            "workers": workers_of(metrics),
            # Start-up accounting of the attempt that finished (bench/train_overhead.py uses it).
            "last_attempt": {k: metrics.get(k) for k in ("train_fn_started_at", "setup_seconds")},
        }


def train(spec: JobSpec | ResolvedJob, *, address: str | None = None, hooks: Sequence[RunHooks] = ()) -> dict:
    """Fine-tune per the spec on Ray Train, register the best checkpoint, return a summary."""
    job = spec if isinstance(spec, ResolvedJob) else resolve(spec)
    return run(FineTuneJob(job), address=address, hooks=hooks)


def workers_of(metrics: dict) -> dict:
    """The ranks of the attempt that finished: how many, on which nodes (rank order), on what device."""
    return {
        "world_size": metrics.get("world_size"),
        "node_ids": (metrics.get("worker_node_ids") or "").split(","),
        "device": metrics.get("worker_device"),
        "collective_backend": metrics.get("collective_backend"),
    }

