"""The TorchTrainer of a job, kept light to import.

A Tune trial's driver process imports this module to build its Train run; importing the worker's
training code (transformers, the model classes) there would add seconds to every trial for
nothing, so the train function is reached by name on the workers only.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ray.train.torch import TorchTrainer
from ray.train.v2._internal.callbacks import DatasetsCallback

from jobs.spec import JobSpec


def run_name(spec: JobSpec, data_fingerprint: str) -> str:
    """Deterministic: the same spec on the same data resumes the same run folder."""
    digest = hashlib.sha256(f"{spec.spec_hash()}:{data_fingerprint}".encode()).hexdigest()[:12]
    return f"{spec.name}-{digest}"


def train_fn(config: dict) -> None:
    """Ray Train entry point: `jobs.worker.train_loop_per_worker`, imported on the worker."""
    from jobs.worker import train_loop_per_worker

    train_loop_per_worker(config)


class _JobTrainer(TorchTrainer):
    """TorchTrainer less Ray Data's per-run DatasetManager actor, which jobs never use.

    Jobs shard their own data (jobs/worker.py), so the actor was one more Python process started
    for every run (about 1.3 s of CPU on the critical path of a small machine) and never called.
    """

    def _create_default_callbacks(self):
        callbacks = super()._create_default_callbacks()
        if self.datasets:
            return callbacks
        return [c for c in callbacks if not isinstance(c, DatasetsCallback)]


def build_trainer(spec: JobSpec, *, name: str, callbacks: list | None = None, max_failures: int | None = None) -> TorchTrainer:
    """The spec's TorchTrainer: run `name` under `spec.storage_path`, so a rerun resumes it.

    `max_failures` overrides the spec's worker-group restarts (a search's trials use Tune's).
    """
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig

    s = spec.scaling
    resources = {"CPU": s.cpus_per_worker}
    if s.use_gpu:
        resources["GPU"] = s.gpus_per_worker
    return _JobTrainer(
        train_fn,
        train_loop_config={"spec": spec.model_dump(mode="json"), "run_dir": str(Path(spec.storage_path) / name)},
        scaling_config=ScalingConfig(num_workers=s.num_workers, use_gpu=s.use_gpu, resources_per_worker=resources),
        run_config=RunConfig(
            name=name,
            storage_path=spec.storage_path,
            checkpoint_config=CheckpointConfig(
                num_to_keep=spec.checkpointing.num_to_keep,
                checkpoint_score_attribute=f"val_{spec.metric}",
                checkpoint_score_order=spec.mode,
            ),
            failure_config=FailureConfig(max_failures=spec.failure.max_failures if max_failures is None else max_failures),
            callbacks=callbacks,
        ),
    )
