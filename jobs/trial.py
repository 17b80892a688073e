"""One trial of a search: the spec it trains, its Train run's name, and the Tune trainable.

Tune starts a new process for every trial and imports this module there, so it imports only what
building a Train run needs (the spec and `jobs.trainer`), not the scoring, registry and plotting
code of the search's driver: measured, that cut the trial process's imports from 3.9 s to 1.1-1.3 s.
"""

from __future__ import annotations

import hashlib

import numpy as np

from cluster.ray_compat import drain_tune_reports
from jobs.spec import JobSpec
from jobs.trainer import build_trainer, run_name
from jobs.tune_spec import split_params


def search_metric(spec: JobSpec) -> str:
    return spec.tune.metric or spec.metric


def search_mode(spec: JobSpec) -> str:
    if spec.tune.mode:
        return spec.tune.mode
    from biomed.tasks import get_task

    return get_task(spec.task.name).metric_mode(search_metric(spec))


def trial_spec(spec: JobSpec, params: dict) -> JobSpec:
    """The spec a trial trains: sampled values in `training` and `model`, checkpoints kept by the search metric."""
    raw = spec.model_dump(mode="json")
    training, model = split_params({k: (v.item() if isinstance(v, np.generic) else v) for k, v in params.items()})
    raw["training"].update(training)
    raw["model"].update(model)
    raw["checkpointing"].update({"metric": search_metric(spec), "mode": search_mode(spec)})
    raw["tune"] = None
    return JobSpec.model_validate(raw)


def trial_run_name(spec: JobSpec, data_fingerprint: str, experiment: str) -> str:
    """A trial's Train run: deterministic within its search (a resumed search resumes it), and
    never the folder of a plain `biomed train` run of the same settings, which may be finished:
    a trial that "resumed" that run would report nothing and fail the search."""
    return f"{run_name(spec, data_fingerprint)}-{hashlib.sha256(experiment.encode()).hexdigest()[:8]}"


def run_trial(params: dict, *, spec_dict: dict, data_fingerprint: str, experiment: str, verbosity: str = "default", streams: dict | None = None) -> None:
    """Tune function trainable: one Ray Train run per trial.

    The Train run never restarts its own worker group: Tune retries the failed trial instead
    (the search's FailureConfig), and the retry resumes the run from its latest checkpoint.
    A search prints one line per trial from its driver, so the trial's workers log their epochs
    only under "verbose". `streams`: the streamed splits' indexes from the search's driver.
    """
    from ray.tune.integration.ray_train import TuneReportCallback

    spec = trial_spec(JobSpec.model_validate(spec_dict), params)
    # Why not Train's own retries: when ASHA stops a trial, this process exits, and Ray tears
    # down its Train controller; the controller sees its workers die first and, with retries
    # left, starts a new worker group. Measured on Ray 2.60: that group's placement group is
    # created after Train's placement-group cleaner last looked, so it is never removed, and
    # its CPUs stay reserved until the search ends: the next trials wait 60 s and fail.
    trainer = build_trainer(
        spec, name=trial_run_name(spec, data_fingerprint, experiment), callbacks=[TuneReportCallback()], max_failures=0,
        verbosity="verbose" if verbosity == "verbose" else "quiet", in_search=True, streams=streams,
    )
    trainer.fit()
    # fit() returns once its last report is in Tune's queue; the return must not overtake it.
    drain_tune_reports()
