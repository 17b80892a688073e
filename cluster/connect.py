"""The one place that starts or joins Ray, and resolves which cluster a command talks to.

The connection layer: below the jobs core, above `biomed`. `connect()` joins a cluster as a
driver; `dashboard_address()` and `jobs_client()` resolve a cluster's dashboard (Jobs API, State
API) the same way for `biomed submit`, `biomed jobs` and `biomed cluster info`.
"""

from __future__ import annotations

import logging
import os

from biomed.log import get_logger, is_verbose
from cluster import ray_compat
from cluster.local_head import read_head
from cluster.resources import ClusterUnavailable, describe_nodes, live_nodes

log = get_logger(__name__)

# Workers inherit the driver's environment when the driver starts the local cluster: no hub
# look-ups at run time, and no tokenizer thread pools fighting the training threads.
WORKER_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
}


def connect(*, address: str | None = None, num_cpus: int | None = None) -> dict:
    """Join the cluster at `address` (or $RAY_ADDRESS, or the biomed local head when one is
    running), else start an embedded local one.

    Returns the cluster's resources, `autoscaler` (ray_compat.autoscaler_info(), None without
    one) and `fixed_size`: no autoscaler, as the embedded Ray and the local head have. A Ray
    already initialised in this process is reused.
    """
    ray_compat.check_ray_version()
    import ray

    os.environ.update(WORKER_ENV)
    # The embedded Ray and the local head have the nodes they started with; a cluster named by
    # address is of fixed size unless it runs an autoscaler (cluster/capacity.py then asks it
    # for nodes and waits rather than refuses).
    named = bool(address or os.environ.get("RAY_ADDRESS"))
    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS") or _local_head_address()
        for key, value in ray_compat.train_driver_env(local=not address).items():
            os.environ.setdefault(key, value)
        # Ray's own INFO lines only under --verbose: the driver's ("Started a local Ray instance")
        # and those of this job's actors (e.g. Train's placement-group cleaner, once per run).
        level = "INFO" if is_verbose() else "WARNING"
        quiet = {"log_to_driver": True, "logging_level": getattr(logging, level), "logging_config": ray.LoggingConfig(log_level=level)}
        if address:
            ray.init(address=address, runtime_env=_driver_runtime_env(), **quiet)
        else:
            for key, value in ray_compat.serve_cluster_env().items():
                os.environ.setdefault(key, value)
            # The dashboard (127.0.0.1, token auth on) also backs the State API that Train V2's
            # placement-group cleaner polls; without it that cleaner logs a warning every few seconds.
            ray.init(address="local", num_cpus=num_cpus, dashboard_host="127.0.0.1", runtime_env=ray_compat.job_runtime_env(), **quiet)
        log.debug("joined %s", address or "a new embedded local Ray")
    autoscaler = ray_compat.autoscaler_info() if named else None
    return {**cluster_resources(), "fixed_size": autoscaler is None, "autoscaler": autoscaler}


def _driver_runtime_env() -> dict:
    # A driver run as a Ray job already has the job's runtime env, and Ray refuses to merge a
    # driver's env var that the job also sets: add only the ones the job lacks.
    job_env = ray_compat.job_env_vars()
    return ray_compat.job_runtime_env({k: v for k, v in WORKER_ENV.items() if k not in job_env})


def _local_head_address() -> str | None:
    # A head started by `biomed serve deploy` is joined rather than a second cluster started
    # beside it: with two on one machine, Ray's "auto" address look-ups pick either.
    head = read_head()
    return head["address"] if head else None


def cluster_resources() -> dict:
    """CPUs, GPUs and alive nodes of the cluster this process has joined."""
    import ray

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
    import ray

    address = address or os.environ.get("RAY_ADDRESS")
    if address is None:
        head = read_head()
        address = head["dashboard_url"] if head else None
    if address and address.startswith(("http://", "https://")):
        jobs_client(address)  # unreachable or refused: a plain error before the State API's
        return {"address": address, **describe_nodes(live_nodes(address))}
    started_here = not ray.is_initialized()
    connect(address=address)
    try:
        nodes = [
            {
                "node_id": n["NodeID"],
                "node_ip": n["NodeManagerAddress"],
                "is_head": ray_compat.HEAD_NODE_RESOURCE in n["Resources"],
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


def dashboard_address(address: str | None) -> str:
    """The dashboard URL to talk to: `address`, $RAY_ADDRESS, or the local head's."""
    address = address or os.environ.get("RAY_ADDRESS")
    if address is None:
        head = read_head()
        if head is None:
            raise ClusterUnavailable("no cluster address: pass --address http://HOST:8265 (the Ray dashboard) or start one with `biomed cluster up --local`")
        return head["dashboard_url"]
    if not address.startswith(("http://", "https://")):
        raise ClusterUnavailable(f"address {address!r}: jobs are submitted to the Ray dashboard, give its URL (e.g. http://127.0.0.1:8265)")
    return address.rstrip("/")


def jobs_client(address: str | None):
    """A JobSubmissionClient for `address`, with unreachable clusters and bad tokens made plain."""
    ray_compat.check_ray_version()
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    url = dashboard_address(address)
    try:
        return JobSubmissionClient(url)
    except ConnectionError:
        raise ClusterUnavailable(f"cannot reach a Ray cluster at {url}: is the head up and is this its dashboard address?") from None
    except AuthenticationError as error:
        raise ClusterUnavailable(
            f"{url} refused this client's Ray auth token ({str(error).splitlines()[0]}). Pass the cluster's token as "
            "$RAY_AUTH_TOKEN, $RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token (`biomed cluster up --local` prints where it is)"
        ) from None
