"""One lifecycle for every run: prepare → join the cluster (capacity, shared storage) → fit →
select → score → register, with hooks at the run's start, at each report, at registration and
at its end.

`biomed train` and `biomed pretrain` run a whole `Job` through `run`; each Tune trial fits its
Train run through `fit`; the search driver registers its best trial through `register`. Tracking
and audit plug in as `RunHooks`, once, for all of them. Reports reach the hooks from Ray Train's
controller (`ray.train.UserCallback`), never from the workers; a hook that fails warns once and
never fails the run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

import ray.train

from biomed.log import get_logger
from cluster.capacity import wait_for_capacity
from cluster.connect import connect
from cluster.storage import check_storage_shared
from jobs.errors import TrainingFailed
from jobs.registry import registry_for
from jobs.run_storage import display
from jobs.trainer import worker_demand

log = get_logger(__name__)


@dataclass(frozen=True)
class RunInfo:
    """What a hook is told about a run."""

    kind: str  # "train", "pretrain", "trial" or "search"
    name: str  # the name it registers under
    run_name: str  # its run folder (a search: its experiment)
    run_path: str
    parent: str | None = None  # a trial's search experiment


class RunHooks(Protocol):
    """Called by the lifecycle; every method may be left out. `on_report` runs on Ray Train's
    controller, so a hook must pickle; the others run on the driver."""

    def on_start(self, run: RunInfo) -> None: ...

    def on_report(self, run: RunInfo, metrics: dict) -> None: ...

    def on_register(self, run: RunInfo, entry: dict) -> None: ...

    def on_end(self, run: RunInfo, summary: dict | None, error: BaseException | None) -> None: ...


class HookCaller:
    """Calls the hooks that have a method; a failing hook is logged once and never fails the run."""

    def __init__(self, hooks: Sequence[RunHooks] = ()):
        self.hooks = list(hooks)
        self._warned: set[int] = set()

    def __call__(self, method: str, *args) -> None:
        for index, hook in enumerate(self.hooks):
            call = getattr(hook, method, None)
            if call is None:
                continue
            try:
                call(*args)
            except Exception as error:  # noqa: BLE001 (a hook must never fail training)
                if index not in self._warned:
                    self._warned.add(index)
                    log.warning("run hook %s failed in %s and is skipped from now on where it fails: %s", type(hook).__name__, method, error)


class ReportHooks(ray.train.UserCallback):
    """The hooks' `on_report`, called by Ray Train's controller after each report (rank 0's metrics)."""

    def __init__(self, run: RunInfo, hooks: Sequence[RunHooks]):
        self.run, self.caller = run, HookCaller(hooks)

    def after_report(self, run_context, metrics: list[dict], checkpoint) -> None:
        if metrics:
            self.caller("on_report", self.run, dict(metrics[0]))


class Job(Protocol):
    """What a kind of run supplies to the lifecycle (jobs/train.py, jobs/pretrain.py)."""

    info: RunInfo
    spec: object  # its spec: scaling, storage_path, registry_storage, failure
    storage_given: str

    def prepare(self) -> None:
        """The data pass on the driver: bad data fails here, before any cluster or worker starts."""

    def trainer(self, callbacks: list):
        """The run's TorchTrainer, with these Ray Train callbacks."""

    def finish(self, result, caller: HookCaller) -> dict:
        """Select, score and register the run's best checkpoint; the run's summary."""


def fit(job: Job, hooks: Sequence[RunHooks] = (), *, callbacks: Sequence = ()):
    """The job's Train run, its reports going to the hooks; TrainingFailed when it gives up."""
    trainer = job.trainer([ReportHooks(job.info, hooks), *callbacks])
    try:
        return trainer.fit()
    except ray.train.TrainingFailedError as error:
        raise TrainingFailed(f"run {job.info.run_name} failed after {job.spec.failure.max_failures} retries: {error}") from error


def join(spec, *, address: str | None, storage_given: str, demand=None) -> dict:
    """Connect to the cluster (an embedded local Ray without an address), check that every node
    sees the storage, and wait until the workers fit; the cluster's resources."""
    resources = connect(address=address)
    check_storage_shared(spec.storage_path, given=storage_given)
    wait_for_capacity(demand or worker_demand(spec.scaling), fixed_size=resources["fixed_size"])
    return resources


def run(job: Job, *, address: str | None = None, hooks: Sequence[RunHooks] = ()) -> dict:
    """A whole run: prepare, join, fit, then select, score and register (`job.finish`)."""
    caller = HookCaller(hooks)
    started = time.perf_counter()
    job.prepare()
    joining = time.perf_counter()
    resources = join(job.spec, address=address, storage_given=job.storage_given)
    log.info("run %s → %s on %s", job.info.run_name, job.info.run_path, resources)
    caller("on_start", job.info)
    fitting = time.perf_counter()
    try:
        result = fit(job, caller.hooks)
        fitted = time.perf_counter()
        summary = job.finish(result, caller)
    except BaseException as error:
        caller("on_end", job.info, None, error)
        raise
    summary["timing_s"] = {
        **summary.get("timing_s", {}),
        "validate_data": round(joining - started, 3), "connect": round(fitting - joining, 3), "fit": round(fitted - fitting, 3),
        "score_and_register": round(time.perf_counter() - fitted, 3), "total": round(time.perf_counter() - started, 3),
    }
    caller("on_end", job.info, summary, None)
    return summary


def register(
    info: RunInfo, *, registry_storage: str, model_dir: Path, record: dict, selection: dict, caller: HookCaller, extra_files: dict[str, bytes] | None = None,
) -> dict:
    """Register a selected checkpoint folder as the next version of `info.name`."""
    entry = registry_for(registry_storage).register(name=info.name, model_dir=model_dir, record=record, selection=selection, extra_files=extra_files)
    log.info("registered %s@%s at %s", entry["name"], entry["version"], display(entry["path"]))
    caller("on_register", info, entry)
    return entry
