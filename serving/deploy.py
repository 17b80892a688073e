"""Deploy, inspect and stop the inference application (`biomed serve ...`).

With no cluster address, Serve runs on a local Ray head on 127.0.0.1 that outlives the command
(cluster/local_head.py), so the endpoint stays up until `biomed serve shutdown`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from biomed.families import extra_families
from cluster.capacity import Demand, wait_for_capacity
from cluster.connect import WORKER_ENV, connect
from cluster.local_head import read_head, start_head, stop_head
from cluster import ray_compat
from cluster.ray_compat import serve_http_host, serve_replica_http_targets
from jobs.registry import RegistryError, registry_for
from jobs.serve_spec import ServeSpec
from serving.auth import TOKEN_ENV, resolve_token, token_path, token_sha256
from serving.config import APP_NAME


def settings_for(entry: dict, overrides: dict) -> ServeSpec:
    """The model's `serve:` section from its registered spec, with CLI overrides on top."""
    base = (entry.get("spec") or {}).get("serve") or {}
    return ServeSpec.model_validate({**base, **{k: v for k, v in overrides.items() if v is not None}})


def _join(address: str | None) -> str | None:
    """Connect to `address` or $RAY_ADDRESS, else to the local head (started if needed; connect()
    joins a running head by itself). Returns the dashboard URL of the local head, if used."""
    import ray

    if ray.is_initialized():  # a caller (a test, a notebook) already joined a cluster
        return None
    head = None if (address or os.environ.get("RAY_ADDRESS")) else start_head()
    connect(address=address)
    return head["dashboard_url"] if head else None


def replica_urls(host: str, *, expected: int = 1, timeout_s: float = 15.0) -> list[str]:
    """Base URLs of the app's replicas' own HTTP servers (Serve's direct ingress), which answer
    the same routes as the proxy without its hop. Empty when direct ingress is off.

    A replica gets its port while it starts, so this waits up to `timeout_s` for `expected` of them.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        replicas = serve_replica_http_targets(APP_NAME)
        if len(replicas) >= expected or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    # A replica binds the proxy's host: a wildcard host is reached at the replica's node address.
    return [f"http://{ip if host in ('0.0.0.0', '::') else host}:{port}" for ip, port in replicas]


def _no_cluster(address: str | None) -> bool:
    return not (address or os.environ.get("RAY_ADDRESS") or read_head())


def deploy(refs: list[str], *, storage_path: str | Path, overrides: dict | None = None, address: str | None = None) -> dict:
    """Deploy the named registered models (the first one is primary) behind one HTTP endpoint."""
    registry = registry_for(storage_path)
    entries = [registry.get(ref) for ref in refs]  # unknown names fail here, before any Ray
    for entry in entries:
        if not entry.get("probe"):
            raise RegistryError(f"{entry['name']}@{entry['version']} was registered without a probe prediction; train or tune it again")
    settings = settings_for(entries[0], overrides or {})
    pinned = [f"{e['name']}@{e['version']}" for e in entries]
    token = resolve_token()

    from ray import serve

    from serving.app import ModelServer

    dashboard = _join(address)
    replicas = max(settings.min_replicas, 1)
    demand = Demand(what=f"{replicas} Serve replica(s) (serve.min_replicas, at least 1)", bundles=replicas, cpus=settings.num_cpus_per_replica, gpus=settings.num_gpus_per_replica)
    named = address or os.environ.get("RAY_ADDRESS")
    wait_for_capacity(demand, fixed_size=not named or ray_compat.autoscaler_info() is None, replacing_app=APP_NAME)
    # Per-request access logs cost the proxy and the replica a formatted log line each; errors
    # and warnings are still logged.
    quiet = {"log_level": "WARNING", "enable_access_log": False}
    serve.start(
        http_options={"host": settings.host, "port": settings.port, "request_timeout_s": settings.request_timeout_s},
        proxy_location=settings.proxy_location, logging_config=quiet,
    )
    app = ModelServer.options(
        autoscaling_config=settings.autoscaling_config(),
        max_ongoing_requests=settings.max_ongoing_requests,
        max_queued_requests=settings.max_queued_requests,
        backpressure_config={"status_code": 503, "retry_after_s": 1},
        logging_config=quiet,
        ray_actor_options={
            "num_cpus": settings.num_cpus_per_replica,
            "num_gpus": settings.num_gpus_per_replica,
            "runtime_env": {"env_vars": WORKER_ENV},
        },
    ).bind(
        storage_path=str(Path(storage_path).expanduser().resolve()),
        models=pinned,
        settings=settings.model_dump(mode="json"),
        token_sha256=token_sha256(token),
        families=extra_families(),
    )
    serve.run(app, name=APP_NAME, route_prefix="/")
    url = f"http://{settings.host}:{settings.port}"
    return {
        "url": url,
        "replica_urls": replica_urls(settings.host, expected=max(settings.min_replicas, 1)),
        "models": pinned,
        "predict_urls": [f"{url}/{ref.split('@')[0]}/predict" for ref in refs],
        "docs_url": f"{url}/docs",
        "token": f"${TOKEN_ENV}" if os.environ.get(TOKEN_ENV) else str(token_path()),
        "dashboard_url": dashboard,
        "settings": settings.model_dump(mode="json"),
    }


def status(*, address: str | None = None) -> dict:
    from ray import serve

    if _no_cluster(address):
        return {"running": False, "reason": "no local head is running (biomed serve deploy starts one)"}
    connect(address=address)
    details = serve.status()
    apps = {}
    for name, app in details.applications.items():
        apps[name] = {
            "status": str(app.status.value if hasattr(app.status, "value") else app.status),
            "deployments": {
                d_name: {
                    "status": str(d.status.value if hasattr(d.status, "value") else d.status),
                    "replicas": {str(k.value if hasattr(k, "value") else k): v for k, v in d.replica_states.items()},
                }
                for d_name, d in app.deployments.items()
            },
        }
    if APP_NAME in apps:
        apps[APP_NAME]["replica_urls"] = replica_urls(serve_http_host(), expected=0)
    return {"running": bool(apps), "applications": apps}


def shutdown(*, address: str | None = None) -> dict:
    """Remove the application; stop the local head too when this tool started it."""
    from ray import serve

    if _no_cluster(address):
        return {"stopped_serve": False, "stopped_local_head": False}
    import ray

    connect(address=address)
    serve.shutdown()
    # Disconnect before stopping the head: a driver still attached when its GCS goes away waits
    # 60 s for it at exit and then kills itself with status 1 (seen once in the suite).
    ray.shutdown()
    stopped_head = stop_head(only_started_by="serve") if not (address or os.environ.get("RAY_ADDRESS")) else False
    return {"stopped_serve": True, "stopped_local_head": stopped_head}
