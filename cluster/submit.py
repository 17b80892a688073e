"""Job submission and control through Ray's Jobs API (`JobSubmissionClient`), nothing home-made.

A submitted job is `python -m jobs.cli train|tune SPEC` run by Ray on the cluster, with the
current directory (specs, data) and this project's packages carried in its runtime environment.
Its submission id is a function of the spec hash, so submitting the same spec again while it runs
or after it succeeded reports the existing job instead of starting a second one; after a failure
or a stop it starts the next attempt (`-r2`, `-r3`, ...).
"""

from __future__ import annotations

import asyncio
import importlib.util
import shlex
import time
from pathlib import Path

from cluster.connect import WORKER_ENV, dashboard_address, jobs_client
from cluster.resources import check_scaling_fits, live_nodes, load_cluster_config, shapes_from_config, shapes_from_nodes
from jobs.resolve import SpecError, load_job

# Statuses that make a resubmission a duplicate: the same spec is being trained or already was.
KEEP_STATUSES = {"PENDING", "RUNNING", "SUCCEEDED"}
TERMINAL_STATUSES = {"SUCCEEDED", "FAILED", "STOPPED"}
PACKAGES = ("biomed", "jobs", "cluster", "serving")
# Never uploaded with a job: environments, VCS data, caches and run outputs (checkpoints go to the
# spec's storage path, which is shared, not shipped).
EXCLUDES = [".venv", "venv", ".git", "runs", "ray_results", "__pycache__", "*.egg-info", ".pytest_cache"]


def submission_id_for(name: str, spec_hash: str, command: str) -> str:
    return f"biomed-{command}-{name}-{spec_hash[:12]}"


def _attempt(job_id: str, base: str) -> int:
    if job_id == base:
        return 1
    suffix = job_id.removeprefix(base + "-r")
    return int(suffix) if suffix.isdigit() else 0


def _runtime_env(working_dir: Path, storage_path: str) -> dict:
    excludes = list(EXCLUDES)
    storage = Path(storage_path)
    if storage.is_relative_to(working_dir) and storage != working_dir:
        excludes.append(str(storage.relative_to(working_dir)))
    # The packages travel unless the working dir already holds them (a checkout of this repo).
    modules = []
    for name in PACKAGES:
        folder = Path(importlib.util.find_spec(name).submodule_search_locations[0])
        if not folder.is_relative_to(working_dir):
            modules.append(str(folder))
    env = {"working_dir": str(working_dir), "excludes": excludes, "env_vars": dict(WORKER_ENV)}
    if modules:
        env["py_modules"] = modules
    return env


def submit_spec(
    spec_path: str | Path,
    *,
    address: str | None,
    command: str = "train",
    storage_path: str | None = None,
    cluster_config: str | Path | None = None,
) -> dict:
    """Validate the spec here, check it fits the cluster, then submit it (or report the job
    already running or done for the same spec). Nothing is submitted when a check fails."""
    job = load_job(spec_path, storage_path=storage_path)
    spec = job.spec
    if command == "tune" and spec.tune is None:
        raise SpecError(f"{spec_path}: `biomed submit --tune` needs a tune: section in the spec")
    working_dir = Path.cwd().resolve()
    spec_file = Path(spec_path).resolve()
    if not spec_file.is_relative_to(working_dir):
        raise SpecError(f"spec {str(spec_path)!r} is outside the current directory {str(working_dir)!r}, which is what the job carries; run from a folder that holds it")
    config = load_cluster_config(cluster_config) if cluster_config is not None else None
    url = dashboard_address(address)
    client = jobs_client(url)
    if config is not None:
        # What the autoscaler may launch, not only the nodes up right now.
        shapes, source = shapes_from_config(config), f"cluster config {str(cluster_config)!r}"
    else:
        shapes, source = shapes_from_nodes(live_nodes(url)), f"the cluster at {url}"
    plan = check_scaling_fits(spec.scaling, shapes, source=source)

    spec_hash = job.spec_hash()
    base = submission_id_for(spec.name, spec_hash, command)
    attempts = sorted((j for j in client.list_jobs() if j.submission_id and _attempt(j.submission_id, base)), key=lambda j: _attempt(j.submission_id, base))
    summary = {"name": spec.name, "spec_hash": spec_hash, "address": url, "storage_path": spec.storage_path, "resources": plan}
    if attempts and str(attempts[-1].status.value) in KEEP_STATUSES:
        latest = attempts[-1]
        return {**summary, "submitted": False, "submission_id": latest.submission_id, "status": str(latest.status.value), "reason": f"the same spec was already submitted and is {latest.status.value}"}
    job_id = base if not attempts else f"{base}-r{_attempt(attempts[-1].submission_id, base) + 1}"
    entrypoint = shlex.join(["python", "-m", "jobs.cli", command, str(spec_file.relative_to(working_dir)), "--storage-path", spec.storage_path, "--json"])
    try:
        _submit_when_agent_ready(
            client,
            entrypoint=entrypoint,
            submission_id=job_id,
            runtime_env=_runtime_env(working_dir, spec.storage_path),
            metadata={"biomed_name": spec.name, "biomed_command": command, "biomed_spec_hash": spec_hash},
        )
    except RuntimeError as error:
        if "already exists" not in str(error):
            raise
        # Another submit of the same spec won the race: report that job, start nothing.
        info = client.get_job_info(job_id)
        return {**summary, "submitted": False, "submission_id": job_id, "status": str(info.status.value), "reason": "submitted concurrently by another client"}
    return {**summary, "submitted": True, "submission_id": job_id, "status": "PENDING", "entrypoint": entrypoint}


def _submit_when_agent_ready(client, *, timeout_s: float = 30.0, **job) -> None:
    # A head that has just started answers 500 "No available agent" until its node's agent is up.
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            client.submit_job(**job)
            return
        except RuntimeError as error:
            if "No available agent" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _job_row(job) -> dict:
    return {
        "submission_id": job.submission_id,
        "status": str(job.status.value),
        "entrypoint": job.entrypoint,
        "message": job.message,
        "start_time_ms": job.start_time,
        "end_time_ms": job.end_time,
        "metadata": job.metadata or {},
    }


def list_jobs(*, address: str | None) -> list[dict]:
    """Every job of the cluster (ours and others), oldest first."""
    jobs = [j for j in jobs_client(address).list_jobs() if j.submission_id]
    return [_job_row(j) for j in sorted(jobs, key=lambda j: j.start_time or 0)]


def job_status(job_id: str, *, address: str | None) -> dict:
    client = jobs_client(address)
    return _job_row(_info(client, job_id))


def _info(client, job_id: str):
    try:
        return client.get_job_info(job_id)
    except RuntimeError as error:
        if "does not exist" in str(error) or "404" in str(error):
            raise ValueError(f"no job {job_id!r} on this cluster (`biomed jobs list` shows them)") from None
        raise


def job_logs(job_id: str, *, address: str | None, follow: bool = False, write=print) -> dict:
    """Print the job's logs; with `follow`, stream them until the job ends. Returns its status."""
    client = jobs_client(address)
    _info(client, job_id)
    if not follow:
        write(client.get_job_logs(job_id), end="")
    else:
        async def stream() -> None:
            async for chunk in client.tail_job_logs(job_id):
                write(chunk, end="")

        asyncio.run(stream())
    return _job_row(_info(client, job_id))


def wait_for(job_id: str, *, address: str | None, statuses: set[str], timeout_s: float = 600.0) -> dict:
    """Poll until the job reaches one of `statuses` (or the timeout); returns its row."""
    client = jobs_client(address)
    deadline = time.monotonic() + timeout_s
    while True:
        row = _job_row(_info(client, job_id))
        if row["status"] in statuses or time.monotonic() > deadline:
            return row
        time.sleep(0.5)


def stop_job(job_id: str, *, address: str | None, timeout_s: float = 60.0) -> dict:
    """Ask Ray to stop the job and wait until it has (it gets SIGTERM, then SIGKILL)."""
    client = jobs_client(address)
    _info(client, job_id)
    client.stop_job(job_id)
    return wait_for(job_id, address=address, statuses=TERMINAL_STATUSES, timeout_s=timeout_s)
