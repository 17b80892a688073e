"""The one place that starts or joins Ray."""

from __future__ import annotations

import json
import os

import ray

from cluster.local_head import SERVE_CLUSTER_ENV, read_head

# Workers inherit the driver's environment when the driver starts the local cluster: no hub
# look-ups at run time, and no tokenizer thread pools fighting the training threads.
WORKER_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
}


# Set by Ray in the environment of a job's driver: the job's config, runtime env included.
JOB_CONFIG_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"

# Ray Train V2's controller polls its workers every 2 s by default, so every state change (workers
# up, training finished) waits up to 2 s. 0.1 s cuts that per-job latency (measured: fixed cost
# 12.3 s at 2 s, 10.6-12.2 s at 0.5 s, 9.2-9.9 s at 0.1 s) for a few more small RPCs; it also
# notices a dead worker sooner. Propagated from the driver's environment to the controller by Train.
TRAIN_DRIVER_ENV = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.1"}

# On the embedded single-node cluster a drained node is the whole cluster, so Ray Train's
# preemption watcher (one more actor process per run) has nothing to save there. Kept on for
# real clusters.
LOCAL_TRAIN_DRIVER_ENV = {"RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0"}


def connect(*, address: str | None = None, num_cpus: int | None = None) -> dict:
    """Join the cluster at `address` (or $RAY_ADDRESS, or the biomed local head when one is
    running), else start an embedded local one.

    Returns the cluster's resources. A Ray already initialised in this process is reused.
    """
    os.environ.update(WORKER_ENV)
    for key, value in TRAIN_DRIVER_ENV.items():
        os.environ.setdefault(key, value)
    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS") or _local_head_address()
        if address:
            ray.init(address=address, runtime_env=_driver_runtime_env(), log_to_driver=True)
        else:
            for key, value in {**LOCAL_TRAIN_DRIVER_ENV, **SERVE_CLUSTER_ENV}.items():
                os.environ.setdefault(key, value)
            # The dashboard (127.0.0.1, token auth on) also backs the State API that Train V2's
            # placement-group cleaner polls; without it that cleaner logs a warning every few seconds.
            ray.init(address="local", num_cpus=num_cpus, dashboard_host="127.0.0.1", log_to_driver=True)
    return cluster_resources()


def _driver_runtime_env() -> dict | None:
    # A driver run as a Ray job already has the job's runtime env, and Ray refuses to merge a
    # driver's env var that the job also sets: add only the ones the job lacks.
    job_config = os.environ.get(JOB_CONFIG_ENV)
    job_env = (json.loads(job_config).get("runtime_env") or {}).get("env_vars", {}) if job_config else {}
    missing = {k: v for k, v in WORKER_ENV.items() if k not in job_env}
    return {"env_vars": missing} if missing else None


def _local_head_address() -> str | None:
    # A head started by `biomed serve deploy` is joined rather than a second cluster started
    # beside it: with two on one machine, Ray's "auto" address look-ups pick either.
    head = read_head()
    return head["address"] if head else None


def cluster_resources() -> dict:
    resources = ray.cluster_resources()
    return {
        "num_cpus": resources.get("CPU", 0.0),
        "num_gpus": resources.get("GPU", 0.0),
        "num_nodes": len([n for n in ray.nodes() if n.get("Alive")]),
    }


def cluster_info(*, address: str | None = None) -> dict:
    """CPUs, GPUs and nodes of the cluster a command would use.

    A dashboard URL (http://HOST:8265) is read through the State API without joining; `auto`,
    `ray://...` or HOST:PORT are joined as a driver; no address means the local head when one is
    running, else the embedded local Ray that `biomed train` would start.
    """
    from cluster.resources import describe_nodes, live_nodes

    address = address or os.environ.get("RAY_ADDRESS")
    if address is None:
        head = read_head()
        address = head["dashboard_url"] if head else None
    if address and address.startswith(("http://", "https://")):
        from cluster.submit import jobs_client

        jobs_client(address)  # unreachable or refused: a plain error before the State API's
        return {"address": address, **describe_nodes(live_nodes(address))}
    started_here = not ray.is_initialized()
    connect(address=address)
    try:
        nodes = [
            {
                "node_id": n["NodeID"],
                "node_ip": n["NodeManagerAddress"],
                "is_head": "node:__internal_head__" in n["Resources"],
                "num_cpus": float(n["Resources"].get("CPU", 0.0)),
                "num_gpus": float(n["Resources"].get("GPU", 0.0)),
            }
            for n in ray.nodes()
            if n.get("Alive")
        ]
        return {"address": address or "embedded local Ray", **describe_nodes(nodes)}
    finally:
        if started_here:
            ray.shutdown()
