"""Hyperparameter search: Ray Tune around Ray Train runs, best trial promoted to the registry.

Each trial is a function trainable that builds a TorchTrainer for the spec with the trial's
values written into `training`, reporting every epoch through TuneReportCallback (so ASHA can
stop it). A trial's Train run name comes from its spec, so a restored search resumes each
unfinished trial from that trial's own latest checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path
from typing import Sequence

from biomed.families import extra_families
from biomed.log import get_logger, is_verbose, verbosity
from cluster.ray_compat import tune_console
from jobs.errors import TrainingFailed
from jobs.lifecycle import HookCaller, RunHooks, RunInfo, join
from jobs.resolve import ResolvedJob, resolve
from jobs.run_storage import display, is_uri
from jobs.spec import JobSpec
from jobs.splits import load_splits
from jobs.train import backbone_lineage, best_report, score_and_register
from jobs.trial import run_trial, search_metric, search_mode, trial_job, trial_run_name
from jobs.tune_report import TrialLines, trial_rows, trial_summaries, write_results

log = get_logger(__name__)

METRIC_CHECKPOINT_KEY = "checkpoint_path"
TRIAL_DRIVER_MEMORY_BYTES = 512 * 1024**2


def experiment_name(job: ResolvedJob) -> str:
    """Deterministic from the spec including its search section, and the data."""
    spec = job.spec
    payload = json.dumps({"spec": job.spec_hash(), "tune": spec.tune.model_dump(mode="json"), "data": job.data_fingerprint}, sort_keys=True)
    return f"{spec.name}-tune-{hashlib.sha256(payload.encode()).hexdigest()[:12]}"


def _max_epochs(spec: JobSpec) -> int:
    t = spec.tune
    if t.scheduler.max_epochs is not None:
        return t.scheduler.max_epochs
    epochs = t.search_space.get("epochs")
    return max(epochs.extremes()) if epochs is not None else spec.training.epochs


def _capped_epochs(spec: JobSpec) -> int | None:
    """ASHA's max_t, which caps every trial's epochs; None when no scheduler caps them."""
    return _max_epochs(spec) if spec.tune.scheduler.type == "asha" else None


def _spec_point(spec: JobSpec) -> list[dict] | None:
    t = spec.tune
    if not t.include_spec_values or t.search_algorithm == "grid":
        return None
    point = {k: _spec_value(spec, k) for k in t.search_space if _spec_value(spec, k) is not None}
    return [point] if point else None


def _spec_value(spec: JobSpec, key: str):
    """The spec's own value of a search-space key (`model.` keys from the model section)."""
    return getattr(spec.model, key.removeprefix("model.")) if key.startswith("model.") else getattr(spec.training, key)


def _search_alg(spec: JobSpec, concurrency: int):
    t = spec.tune
    if t.search_algorithm == "optuna":
        import optuna
        from ray.tune.search import ConcurrencyLimiter
        from ray.tune.search.optuna import OptunaSearch

        searcher = OptunaSearch(sampler=optuna.samplers.TPESampler(seed=t.seed), points_to_evaluate=_spec_point(spec))
        return ConcurrencyLimiter(searcher, max_concurrent=concurrency)
    from ray.tune.search import BasicVariantGenerator

    # A seeded generator samples the same configurations on a rerun, so trial run names repeat.
    # Tune ignores TuneConfig.max_concurrent_trials for a generator instance: it takes its own.
    return BasicVariantGenerator(random_state=t.seed, max_concurrent=concurrency, points_to_evaluate=_spec_point(spec))


def planned_trials(spec: JobSpec) -> int:
    """The trials the search will run, as Tune's variant generator counts them: `num_samples`
    repetitions of the grid keys' cross product, where the spec's own values (when run first)
    stand in for one repetition."""
    t = spec.tune
    grids = {k: len(d.grid) for k, d in t.search_space.items() if d.grid is not None}
    point = (_spec_point(spec) or [{}])[0]
    if not point:
        return t.num_samples * math.prod(grids.values())
    return math.prod(n for k, n in grids.items() if k not in point) + (t.num_samples - 1) * math.prod(grids.values())


def trial_concurrency(spec: JobSpec, cluster_cpus: float, cluster_gpus: float) -> int:
    """Concurrent trials that fit the cluster: a trial whose workers cannot start in time fails."""
    s = spec.scaling
    fits = int(cluster_cpus // (s.max_workers * s.cpus_per_worker))
    if s.use_gpu:
        fits = min(fits, int(cluster_gpus // (s.max_workers * s.gpus_per_worker)))
    return max(1, min(spec.tune.max_concurrent_trials, fits))


def _scheduler(spec: JobSpec):
    s = spec.tune.scheduler
    if s.type == "none":
        return None
    from ray.tune.schedulers import ASHAScheduler

    # Rungs count epochs, not reports: a trial retried or resumed mid-run goes on from its
    # checkpoint's epoch, while Tune's training_iteration starts again at 1.
    return ASHAScheduler(time_attr="epoch", max_t=_max_epochs(spec), grace_period=s.grace_period, reduction_factor=s.reduction_factor)


def build_tuner(job: ResolvedJob, *, name: str, resume: bool, concurrency: int, streams: dict | None = None, hooks: Sequence[RunHooks] = ()):
    from ray import tune

    spec = job.spec
    trainable = tune.with_parameters(
        run_trial, job=job.to_dict(), experiment=name, verbosity=verbosity(), streams=streams or None, hooks=list(hooks), families=extra_families(),
    )
    # The trial function only drives a Train run whose workers hold the CPUs/GPUs; reserving a CPU
    # for it would hold a core idle per trial. Tune refuses an empty request, so it reserves the
    # memory the driver process really uses instead.
    trainable = tune.with_resources(trainable, {"CPU": 0, "memory": TRIAL_DRIVER_MEMORY_BYTES})
    path = Path(spec.storage_path) / name
    if resume and tune.Tuner.can_restore(str(path)):
        return tune.Tuner.restore(str(path), trainable=trainable, resume_unfinished=True, resume_errored=True)
    t = spec.tune
    return tune.Tuner(
        trainable,
        param_space={k: d.to_tune() for k, d in t.search_space.items()},
        tune_config=tune.TuneConfig(
            metric=f"val_{search_metric(spec)}",
            mode=search_mode(spec),
            num_samples=t.num_samples,
            search_alg=_search_alg(spec, concurrency),
            scheduler=_scheduler(spec),
            time_budget_s=t.time_budget_s,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=spec.storage_path,
            failure_config=tune.FailureConfig(max_failures=spec.failure.max_failures),
            # Tune's status tables only under --verbose; otherwise one biomed line per trial.
            verbose=None if is_verbose() else 0,
            callbacks=[TrialLines(metric=f"val_{search_metric(spec)}", num_trials=planned_trials(spec), epochs=spec.training.epochs, max_epochs=_capped_epochs(spec))],
        ),
    )


def tune_search(spec: JobSpec | ResolvedJob, *, address: str | None = None, resume: bool = False, hooks: Sequence[RunHooks] = ()) -> dict:
    """Run (or resume) the spec's search, register the best trial's best checkpoint, summarise."""
    job = spec if isinstance(spec, ResolvedJob) else resolve(spec)
    spec = job.spec
    if spec.tune is None:
        raise ValueError("the spec has no tune: section (see `biomed schema`)")
    if is_uri(spec.storage_path):
        raise ValueError(f"storage_path {display(spec.storage_path)!r}: searches need a folder every node sees (each trial's run is read back by the search); object-store URIs are for `biomed train` runs")
    started = time.perf_counter()
    splits = load_splits(job)
    name = experiment_name(job)
    exp_dir = Path(spec.storage_path) / name
    if not resume and exp_dir.exists():
        raise ValueError(f"search {name} already exists at {exp_dir}: pass --resume to continue it")
    resources = join(spec, address=address, storage_given=job.storage_given)  # room for one trial at least
    concurrency = trial_concurrency(spec, resources["num_cpus"], resources["num_gpus"])
    if concurrency < spec.tune.max_concurrent_trials:
        log.warning("running %d trials at a time, not %d: that is what %s fits", concurrency, spec.tune.max_concurrent_trials, resources)
    log.info("search %s → %s", name, exp_dir)
    info, caller = RunInfo(kind="search", name=spec.name, run_name=name, run_path=str(exp_dir)), HookCaller(hooks)
    caller("on_start", info)
    try:
        summary = _search(job, splits, info, caller, resume=resume, concurrency=concurrency, started=started)
    except BaseException as error:
        caller("on_end", info, None, error)
        raise
    caller("on_end", info, summary, None)
    return summary


def _search(job: ResolvedJob, splits, info: RunInfo, caller: HookCaller, *, resume: bool, concurrency: int, started: float) -> dict:
    """The search's trials, then its best trial's best checkpoint scored and registered."""
    spec, name, exp_dir = job.spec, info.run_name, Path(info.run_path)
    searching = time.perf_counter()
    with tune_console(verbose=is_verbose()):
        results = build_tuner(job, name=name, resume=resume, concurrency=concurrency, streams=splits.streams(), hooks=caller.hooks).fit()
    searched = time.perf_counter()
    rows = trial_rows(results, spec, max_epochs=_capped_epochs(spec))
    if not rows:
        raise TrainingFailed(f"search {name}: no trial reported a result ({[str(r.error) for r in results if r.error]})")
    key, mode = f"val_{search_metric(spec)}", search_mode(spec)
    finite = [r for r in rows if r.get(METRIC_CHECKPOINT_KEY) and not math.isnan(r[key])]
    best = best_report(finite, key=key, mode=mode)
    best_job = trial_job(job, best["config"])
    outputs = write_results(rows, exp_dir, metric=key)
    lineage = {**backbone_lineage(job), "search": {"experiment": name, "path": str(exp_dir), "trial_id": best["trial_id"], "config": best["config"], "num_trials": len({r["trial_id"] for r in rows})}}
    best_info = RunInfo(kind="search", name=spec.name, run_name=trial_run_name(best_job, name), run_path=info.run_path, parent=name)
    outcome = score_and_register(best_job, splits, info=best_info, ckpt_dir=Path(best[METRIC_CHECKPOINT_KEY]), val_metrics=best, caller=caller, lineage=lineage)
    trials = trial_summaries(rows, key)
    return {
        "name": spec.name,
        "experiment": name,
        "experiment_path": str(exp_dir),
        "best_trial": {"trial_id": best["trial_id"], "config": best["config"], "epoch": best["epoch"], key: best[key], "checkpoint": best[METRIC_CHECKPOINT_KEY]},
        **outcome,
        "trials": trials,
        "num_trials": len(trials),
        "num_stopped_early": sum(t["stopped_early"] for t in trials),
        "trial_epochs": sum(t["epochs_run"] for t in trials),
        **outputs,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "timing_s": {"search": round(searched - searching, 2), "score_and_register": round(time.perf_counter() - searched, 2)},
        "concurrency": concurrency,
    }
