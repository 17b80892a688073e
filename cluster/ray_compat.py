"""Every private Ray API and internal environment variable this service relies on, in one place.

Each shim names the Ray version and the source file (under `site-packages/ray/`) it was read
from, and `tests/test_ray_compat.py` fails loudly when a new Ray changes it. The dependency stays
`ray<2.61` until every shim here has been checked against the next version; `check_ray_version`
refuses an untested Ray at start-up instead of failing somewhere deep in a run.

Importing this module imports nothing of Ray: `biomed validate` and `biomed serve status` stay
light. Each function imports what it needs.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import logging
import os
import time

# The Ray releases these shims were read from and tested against: [low, high).
TESTED_RAY = ((2, 60), (2, 61))


class RayVersionError(RuntimeError):
    """The installed Ray is outside the range this service was tested with."""


def ray_version() -> str:
    """The installed Ray's version, read from its package metadata (Ray is not imported)."""
    return importlib.metadata.version("ray")


def check_ray_version(version: str | None = None) -> str:
    """Raise RayVersionError unless Ray (or `version`) is in TESTED_RAY; returns the version."""
    version = version or ray_version()
    try:
        major_minor = tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        raise RayVersionError(f"cannot read Ray's version {version!r}") from None
    (low, high) = TESTED_RAY
    if not low <= major_minor < high:
        raise RayVersionError(
            f"Ray {version} is installed, but this service is tested with Ray >={'.'.join(map(str, low))},"
            f"<{'.'.join(map(str, high))} (its private APIs are shimmed in cluster/ray_compat.py): "
            f"install 'ray[train,tune,serve]>={'.'.join(map(str, low))},<{'.'.join(map(str, high))}'"
        )
    return version


# --- Internal environment variables --------------------------------------------------------

# Ray 2.60, ray/train/v2/_internal/constants.py (HEALTH_CHECK_INTERVAL_S_ENV_VAR, default 2 s).
# The Train V2 controller polls its workers this often, so every state change (workers up,
# training finished) waits up to this long. Measured on 2 cores: per-job fixed cost 12.3 s at 2 s,
# 10.6-12.2 s at 0.5 s, 9.2-9.9 s at 0.1 s; it also notices a dead worker sooner. The controller
# inherits it from the driver's environment.
TRAIN_HEALTH_CHECK_INTERVAL_ENV = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"
# Ray 2.60, ray/train/v2/_internal/constants.py (WORKER_GROUP_START_TIMEOUT_S_ENV_VAR, default
# 60 s). How long the controller waits for a worker group's placement before it logs the timeout
# and tries again (a controller error, retried without limit). After a node is lost, an elastic
# run's first restart may still count the dead node's resources (Ray Data's autoscaling
# coordinator refreshes them every 20 s) and then waits out this whole timeout.
TRAIN_WORKER_GROUP_START_TIMEOUT_ENV = "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"
# Ray 2.60, ray/train/v2/_internal/constants.py (ENABLE_PREEMPTION_WATCHER_ENV_VAR, default on).
# One more actor process per run that watches for drained nodes; on the embedded single-node
# cluster a drained node is the whole cluster, so it has nothing to save there.
TRAIN_PREEMPTION_WATCHER_ENV = "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"
# Ray 2.60, ray/serve/_private/constants.py (RAY_SERVE_ENABLE_DIRECT_INGRESS and
# RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S, read once when Serve is imported). Every replica
# also answers HTTP on a port of its own (30000-31000, the proxy's host), so a client can skip the
# proxy hop: measured on 2 cores with a no-op route, 9.2 ms p50 through the proxy, 1.2 ms direct,
# 1.0 ms plain uvicorn. A stopping replica drains 2 s, not 30 s: that wait is for external load
# balancers, and none has to deregister it here.
SERVE_DIRECT_INGRESS_ENV = "RAY_SERVE_ENABLE_DIRECT_INGRESS"
SERVE_DIRECT_INGRESS_DRAIN_ENV = "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"
# Ray 2.60, ray/_private/runtime_env/constants.py (RAY_JOB_CONFIG_JSON_ENV_VAR): set by Ray in
# the environment of a job's driver, holding the job's config with its runtime env.
JOB_CONFIG_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"
# Ray 2.60, ray/_common/constants.py (HEAD_NODE_RESOURCE_NAME): the resource only the head has.
HEAD_NODE_RESOURCE = "node:__internal_head__"
# Ray 2.60, ray/tune/experimental/output.py `get_air_verbosity`, read on every Tuner.fit(): "0"
# selects Tune's older console reporter, which honours RunConfig(verbose=0) fully. The newer one
# prints the experiment's header table and result paths whatever the verbosity (ray/tune/tune.py
# calls `air_progress_reporter.experiment_started` unconditionally).
TUNE_NEW_OUTPUT_ENV = "RAY_AIR_NEW_OUTPUT"


def train_driver_env(*, local: bool) -> dict[str, str]:
    """Environment for a driver that runs Ray Train; `local` when it starts the embedded cluster."""
    env = {TRAIN_HEALTH_CHECK_INTERVAL_ENV: "0.1"}
    if local:
        env[TRAIN_PREEMPTION_WATCHER_ENV] = "0"
    return env


def serve_cluster_env() -> dict[str, str]:
    """Environment for clusters this tool starts, so Serve on them has direct ingress."""
    return {SERVE_DIRECT_INGRESS_ENV: "1", SERVE_DIRECT_INGRESS_DRAIN_ENV: "2"}


@contextlib.contextmanager
def tune_console(*, verbose: bool):
    """While a search runs: Tune's console output off unless `verbose` (then Tune's own)."""
    if verbose:
        yield
        return
    before = os.environ.get(TUNE_NEW_OUTPUT_ENV)
    os.environ[TUNE_NEW_OUTPUT_ENV] = "0"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(TUNE_NEW_OUTPUT_ENV, None)
        else:
            os.environ[TUNE_NEW_OUTPUT_ENV] = before


def job_env_vars() -> dict[str, str]:
    """The env vars of the Ray job this driver runs as ({} outside a job)."""
    raw = os.environ.get(JOB_CONFIG_ENV)
    return (json.loads(raw).get("runtime_env") or {}).get("env_vars", {}) if raw else {}


# --- Private APIs --------------------------------------------------------------------------


def without_unused_datasets_manager(trainer):
    """`trainer` (a Train V2 DataParallelTrainer) less the Ray Data DatasetManager actor when it
    has no datasets: one more Python process per run (about 1.3 s of CPU on a small machine's
    critical path) that jobs sharding their own data never call.

    Ray 2.60, ray/train/v2/api/data_parallel_trainer.py: `fit()` builds its controller's callbacks
    with `self._create_default_callbacks()`, which always adds a
    `ray.train.v2._internal.callbacks.DatasetsCallback`.
    """
    from ray.train.v2._internal.callbacks import DatasetsCallback

    if trainer.datasets:
        return trainer
    defaults = trainer._create_default_callbacks
    trainer._create_default_callbacks = lambda: [c for c in defaults() if not isinstance(c, DatasetsCallback)]
    return trainer


def quiet_train_worker_reports(*, verbose: bool) -> None:
    """In a Ray Train worker: leave out Ray's per-report INFO lines unless `verbose`.

    Ray 2.60, ray/train/v2/_internal/execution/context.py logs "Reporting training result N: ..."
    (every report, every rank) on `logging.getLogger(__file__)`, a logger named by the file's
    path and so outside "ray.train", where `RunConfig(logging_config=LoggingConfig(...))` cannot
    filter it; it reaches the console through the handler Train puts on the worker's root logger
    (ray/train/v2/_internal/logging/logging.py). Its level is set here, by that logger's name.
    """
    from ray.train.v2._internal.execution import context

    logging.getLogger(context.__file__).setLevel(logging.INFO if verbose else logging.WARNING)


def drain_tune_reports(*, timeout_s: float = 10.0, settle_s: float = 0.2) -> None:
    """In a Tune trial that drives a Train V2 run: wait until Tune has taken every report.

    Ray 2.60, ray/train/_internal/session.py: `get_session()._get_or_create_inter_actor_queue()`
    is the queue actor through which TuneReportCallback hands the Train controller's reports to
    the trial, while the trial function's return reaches Tune directly; a return that overtakes
    the last report drops it (seen once: a trial "completed after 7 iterations" of 8).
    """
    from ray.train._internal.session import get_session

    queue = get_session()._get_or_create_inter_actor_queue()
    deadline = time.monotonic() + timeout_s
    while not queue.empty() and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(settle_s)


def serve_replica_http_targets(app_name: str) -> list[tuple[str, int]]:
    """(ip, port) of each running replica's own HTTP server (Serve's direct ingress).

    Ray 2.60: Serve publishes replica ports only through its controller, for external load
    balancers: ray/serve/_private/controller.py `ServeController.get_target_groups(app_name)`,
    reached through ray/serve/context.py `_get_global_client()._controller`; protocols in
    ray/serve/_private/common.py `RequestProtocol`, replica targets named with
    `REPLICA_ID_FULL_ID_STR_PREFIX` ("SERVE_REPLICA::"). With no replica running, the app's group
    lists the proxies instead, which this leaves out.
    """
    import ray
    from ray.serve._private.common import REPLICA_ID_FULL_ID_STR_PREFIX, RequestProtocol
    from ray.serve.context import _get_global_client

    groups = ray.get(_get_global_client()._controller.get_target_groups.remote(app_name))
    return sorted(
        {
            (t.ip, t.port)
            for g in groups
            if g.protocol == RequestProtocol.HTTP
            for t in g.targets
            if t.name.startswith(REPLICA_ID_FULL_ID_STR_PREFIX)
        }
    )


# Ray 2.60, ray/serve/_private/common.py `DeploymentID.to_replica_actor_class_name`: a Serve
# replica's actor class is named "ServeReplica:{app}:{deployment}" (Serve's own test utilities
# find replicas by it); the public State API lists actors with their class names.
SERVE_REPLICA_CLASS_PREFIX = "ServeReplica:"


def resources_per_node() -> dict[str, dict[str, dict[str, float]]]:
    """{node id: {"total": {...}, "free": {...}}} for every alive node (CPU, GPU and custom
    resources). Ray 2.60: ray/_private/state.py `total_resources_per_node` and
    `available_resources_per_node`; the public `ray.available_resources()` sums over the nodes,
    and a worker's bundle must fit on one node."""
    from ray._private import state

    total, free = state.total_resources_per_node(), state.available_resources_per_node()
    return {node: {"total": dict(res), "free": dict(free.get(node, {}))} for node, res in total.items()}


def serve_http_host() -> str:
    """The host Serve's HTTP proxy was started on (ray/serve/context.py `_get_global_client()`,
    ray/serve/_private/client.py `ServeControllerClient.http_config`; Ray 2.60)."""
    from ray.serve.context import _get_global_client

    return _get_global_client().http_config.host


def validate_launcher_config(config: dict) -> dict:
    """What `ray up` does with a cluster launcher file before it touches a cloud: fill in the
    provider's defaults, then validate against ray-schema.json and Ray's own cross-checks.

    Ray 2.60, ray/autoscaler/_private/util.py `prepare_config` and `validate_config` (raises
    jsonschema's ValidationError, or ValueError/KeyError/RuntimeError for cross-checks).
    """
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = prepare_config(config)
    validate_config(config)
    return config


# --- The cluster's autoscaler ---------------------------------------------------------------

# Ray 2.60, ray/_private/ray_constants.py (DEBUG_AUTOSCALING_STATUS): the v1 monitor
# (autoscaler/_private/monitor.py) writes its status there on every update. Every Ray head runs
# that monitor; without an autoscaling config it uses the "readonly" provider, whose node types
# are the nodes themselves (autoscaler/_private/util.py format_readonly_node_type: "node_<id>").
AUTOSCALER_STATUS_KEY = "__autoscaling_status"
READONLY_NODE_TYPE_PREFIX = "node_"


def autoscaler_info() -> dict | None:
    """The joined cluster's autoscaler: {"version": "v1" | "v2", "node_groups": [{"name",
    "resources", "max_count"}] or None when unknown}; None when nodes are only added by hand.

    v2 (ray/autoscaler/v2/utils.py is_autoscaler_v2) publishes its node groups in the GCS
    (ray/_private/state.py GlobalState.get_cluster_config, Ray 2.60); v1 does not publish them.
    """
    import ray._private.state
    from ray.autoscaler.v2.utils import is_autoscaler_v2
    from ray.experimental.internal_kv import _internal_kv_get

    if is_autoscaler_v2():
        config = ray._private.state.state.get_cluster_config()
        groups = [{"name": g.name, "resources": dict(g.resources), "max_count": int(g.max_count)} for g in config.node_group_configs] if config else None
        return {"version": "v2", "node_groups": groups}
    raw = _internal_kv_get(AUTOSCALER_STATUS_KEY)
    if not raw:
        return None
    mapping = (json.loads(raw).get("autoscaler_report") or {}).get("node_type_mapping") or {}
    readonly = all(kind == f"{READONLY_NODE_TYPE_PREFIX}{node}" for node, kind in mapping.items())
    return None if readonly else {"version": "v1", "node_groups": None}


# --- Ray Train's controller while it waits for workers --------------------------------------

# Ray 2.60, ray/train/v2/_internal/execution/controller/controller.py: a worker group that is
# not placed within the start timeout raises WorkerGroupStartupTimeoutError
# (ray/train/v2/_internal/exceptions.py), which the control loop logs with
# `logger.exception("Error in control loop iteration: ...")` on the module's logger (a stack
# trace each time) before it tries again. A run waiting for a lost node is not an error.
TRAIN_CONTROLLER_LOGGER = "ray.train.v2._internal.execution.controller.controller"
# Ray 2.60, ray/train/v2/_internal/callbacks/backend_setup.py: when a worker's node is lost, the
# shutdown of its process group fails and is logged with `logger.exception` ("Graceful shutdown
# of backend failed. This is expected if one of the workers has crashed.").
TRAIN_BACKEND_SETUP_LOGGER = "ray.train.v2._internal.callbacks.backend_setup"
# The job-level runtime env key whose function runs first in every worker process of the job
# (Train's controller included): ray/_private/runtime_env/setup_hook.py.
WORKER_SETUP_HOOK_KEY = "worker_process_setup_hook"
WORKER_SETUP_HOOK = "cluster.ray_compat.quiet_train_start_timeouts"


class TrainWaitLines(logging.Filter):
    """Turns the controller's stack traces of a run that waits (a start timeout; a lost
    worker's failed backend shutdown) into one line each saying what happened."""

    def filter(self, record: logging.LogRecord) -> bool:
        from ray.exceptions import ActorDiedError
        from ray.train.v2._internal.exceptions import WorkerGroupStartupTimeoutError

        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, ActorDiedError):
            record.msg, record.args, record.exc_info, record.exc_text = f"{record.getMessage()} (a worker's actor died: {type(error).__name__})", (), None, None
        elif isinstance(error, WorkerGroupStartupTimeoutError):
            record.msg, record.args, record.exc_info, record.exc_text = (
                "waiting for room for %d Train worker(s): not placed within the start timeout; Ray Train tries again "
                "(a lost node returning, an autoscaler adding one, or other jobs ending makes room)",
                (error.num_workers,), None, None,
            )
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def quiet_train_start_timeouts() -> None:
    """The worker setup hook (WORKER_SETUP_HOOK): in Train's controller, a start timeout and a
    lost worker's backend shutdown are logged as one line each instead of a stack trace."""
    for name in (TRAIN_CONTROLLER_LOGGER, TRAIN_BACKEND_SETUP_LOGGER):
        logger = logging.getLogger(name)
        if not any(isinstance(f, TrainWaitLines) for f in logger.filters):
            logger.addFilter(TrainWaitLines())


def job_runtime_env(env_vars: dict[str, str] | None = None) -> dict:
    """The job-level runtime env a driver joins or starts Ray with: the setup hook, and `env_vars`."""
    return {WORKER_SETUP_HOOK_KEY: WORKER_SETUP_HOOK, **({"env_vars": env_vars} if env_vars else {})}
