"""One trial of a search: the job it trains, its Train run's name, and the Tune trainable.

Tune starts a new process for every trial and imports this module there, so it imports only what
building a Train run needs (the resolved job, the lifecycle's fit and `jobs.trainer`), not the
scoring, registry and plotting code of the search's driver: measured, that cut the trial
process's imports from 3.9 s to 1.1-1.3 s.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np

from biomed.families import register_all
from cluster.ray_compat import drain_tune_reports
from jobs.lifecycle import HookCaller, RunHooks, RunInfo, fit
from jobs.resolve import ResolvedJob
from jobs.run_storage import display, run_location
from jobs.spec import JobSpec
from jobs.trainer import build_trainer
from jobs.tune_spec import split_params


def search_metric(spec: JobSpec) -> str:
    return spec.tune.metric or spec.metric


def search_mode(spec: JobSpec) -> str:
    return spec.tune.mode or spec.task_entry.metric_mode(search_metric(spec))


def trial_job(job: ResolvedJob, params: dict) -> ResolvedJob:
    """The job a trial trains: sampled values in `training` and `model`, checkpoints kept by the
    search metric, no search section. Nothing is resolved again."""
    training, model = split_params({k: (v.item() if isinstance(v, np.generic) else v) for k, v in params.items()})
    checkpointing = {"metric": search_metric(job.spec), "mode": search_mode(job.spec)}
    return job.with_values(training=training, model=model, checkpointing=checkpointing, tune=None)


def trial_run_name(job: ResolvedJob, experiment: str) -> str:
    """A trial's Train run: deterministic within its search (a resumed search resumes it), and
    never the folder of a plain `biomed train` run of the same settings, which may be finished:
    a trial that "resumed" that run would report nothing and fail the search."""
    return f"{job.run_name}-{hashlib.sha256(experiment.encode()).hexdigest()[:8]}"


class TrialJob:
    """A trial's Train run as the lifecycle fits it (the search's driver selects and registers)."""

    def __init__(self, job: ResolvedJob, *, experiment: str, verbosity: str, streams: dict | None):
        self.job, self.spec, self.storage_given = job, job.spec, job.storage_given
        name = trial_run_name(job, experiment)
        self.verbosity, self.streams = verbosity, streams
        self.info = RunInfo(kind="trial", name=job.spec.name, run_name=name, run_path=display(run_location(job.spec.storage_path, name)), parent=experiment)

    def trainer(self, callbacks: list):
        # Why not Train's own retries: when ASHA stops a trial, this process exits, and Ray tears
        # down its Train controller; the controller sees its workers die first and, with retries
        # left, starts a new worker group. Measured on Ray 2.60: that group's placement group is
        # created after Train's placement-group cleaner last looked, so it is never removed, and
        # its CPUs stay reserved until the search ends: the next trials wait 60 s and fail.
        return build_trainer(
            self.spec, name=self.info.run_name, payload={"job": self.job.to_dict()}, callbacks=callbacks, max_failures=0,
            verbosity="verbose" if self.verbosity == "verbose" else "quiet", in_search=True, streams=self.streams,
        )


def run_trial(
    params: dict, *, job: dict, experiment: str, verbosity: str = "default", streams: dict | None = None,
    hooks: Sequence[RunHooks] = (), families: list | None = None,
) -> None:
    """Tune function trainable: one Ray Train run per trial, through the lifecycle's `fit`.

    The Train run never restarts its own worker group: Tune retries the failed trial instead
    (the search's FailureConfig), and the retry resumes the run from its latest checkpoint.
    A search prints one line per trial from its driver, so the trial's workers log their epochs
    only under "verbose". `streams`: the streamed splits' indexes from the search's driver.
    """
    from ray.tune.integration.ray_train import TuneReportCallback

    register_all(families)
    trial = TrialJob(trial_job(ResolvedJob.from_dict(job), params), experiment=experiment, verbosity=verbosity, streams=streams)
    caller = HookCaller(hooks)
    caller("on_start", trial.info)
    try:
        fit(trial, caller.hooks, callbacks=[TuneReportCallback()])
    except BaseException as error:
        caller("on_end", trial.info, None, error)
        raise
    # fit() returns once its last report is in Tune's queue; the return must not overtake it.
    drain_tune_reports()
    caller("on_end", trial.info, None, None)
