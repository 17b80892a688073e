"""The TorchTrainer of a job, kept light to import.

A Tune trial's driver process imports this module to build its Train run; importing the worker's
training code (transformers, the model classes) there would add seconds to every trial for
nothing, so the train function is reached by name on the workers only.
"""

from __future__ import annotations

import hashlib

from ray.train.torch import TorchTrainer

from biomed.families import extra_families
from biomed.log import verbosity as current_verbosity
from cluster.capacity import Demand
from cluster.ray_compat import without_unused_datasets_manager
from jobs.run_storage import run_location


def run_name(spec, data_fingerprint: str) -> str:
    """Deterministic: the same spec on the same data resumes the same run folder (a pretraining
    spec; a fine-tuning job's is `ResolvedJob.run_name`)."""
    digest = hashlib.sha256(f"{spec.spec_hash()}:{data_fingerprint}".encode()).hexdigest()[:12]
    return f"{spec.name}-{digest}"


def train_fn(config: dict) -> None:
    """Ray Train entry point: `jobs.recipe.train_loop_per_worker`, imported on the worker."""
    from jobs.recipe import train_loop_per_worker

    train_loop_per_worker(config)


def pretrain_fn(config: dict) -> None:
    """Ray Train entry point of `biomed pretrain`: `jobs.pretrain_recipe.pretrain_loop_per_worker`."""
    from jobs.pretrain_recipe import pretrain_loop_per_worker

    pretrain_loop_per_worker(config)


LOOPS = {"finetune": train_fn, "pretrain": pretrain_fn}


def worker_demand(scaling) -> Demand:
    """What a run's worker group asks of the cluster (a ScalingSpec's workers, one bundle each)."""
    gpus = scaling.gpus_per_worker if scaling.use_gpu else 0.0
    # An elastic run starts once its minimum fits: Ray Train takes what is there, up to the maximum.
    what = f"{scaling.min_workers} Train worker(s) ({'the minimum of ' if scaling.elastic else ''}scaling.num_workers)"
    return Demand(what=what, bundles=scaling.min_workers, cpus=scaling.cpus_per_worker, gpus=gpus, fewer="scaling.num_workers: {n}")


def build_trainer(
    spec, *, name: str, payload: dict, callbacks: list | None = None, max_failures: int | None = None, verbosity: str | None = None,
    in_search: bool = False, streams: dict | None = None, loop: str = "finetune",
) -> TorchTrainer:
    """The spec's TorchTrainer: run `name` under `spec.storage_path`, so a rerun resumes it.

    `payload`: what the workers' recipe reads besides the run folder (a resolved job as a dict;
    a pretraining spec, its tokenizer and corpus indexes). The families registered at run time
    travel with it.

    `max_failures` overrides the spec's worker-group restarts (a search's trials use Tune's).
    `verbosity` (biomed.log's; default this process's) is what the workers log: Ray Train's own
    per-report lines ("Reporting training result ...") only under "verbose". `in_search`: a Tune
    trial's run, whose every report (step checkpoints too) carries the validation metrics.
    `streams`: the indexes of streamed splits (`Splits.streams()`), so workers skip the pass.
    `loop`: which recipe the workers run ("finetune" or "pretrain").
    """
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig

    verbosity = verbosity or current_verbosity()

    s = spec.scaling
    resources = {"CPU": s.cpus_per_worker}
    if s.use_gpu:
        resources["GPU"] = s.gpus_per_worker
    trainer = TorchTrainer(
        LOOPS[loop],
        train_loop_config={
            **payload,
            "run_dir": run_location(spec.storage_path, name),
            "verbosity": verbosity,
            "validate_every_report": in_search,
            "streams": streams or None,
            "families": extra_families(),
        },
        scaling_config=ScalingConfig(
            num_workers=s.num_workers, use_gpu=s.use_gpu, resources_per_worker=resources, placement_strategy=s.placement_strategy,
            elastic_resize_monitor_interval_s=s.resize_check_interval_s,
        ),
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
            logging_config=LoggingConfig(log_level="INFO" if verbosity == "verbose" else "WARNING"),
        ),
    )
    # Jobs shard their own data (jobs/worker.py), so Ray Data's per-run actor would be idle.
    return without_unused_datasets_manager(trainer)
