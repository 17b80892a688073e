"""Every shim in cluster/ray_compat.py checked against the installed Ray, without a cluster.

Each test fails loudly when a new Ray renames or moves what a shim relies on. What the shims do
inside a running cluster is covered where they are used: replica ports in test_serve, the trial's
report drain in test_tune, the trainer's callbacks in every training test.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cluster import ray_compat
from cluster.ray_compat import RayVersionError, check_ray_version


def test_installed_ray_is_in_the_tested_range_and_others_are_refused():
    import ray

    assert check_ray_version() == ray.__version__
    for untested in ("2.61.0", "2.59.2", "3.0.0", "2.6.0"):
        with pytest.raises(RayVersionError, match=rf"Ray {untested} is installed.*>=2\.60,<2\.61"):
            check_ray_version(untested)
    with pytest.raises(RayVersionError, match="cannot read"):
        check_ray_version("nightly")


def test_cli_refuses_an_untested_ray_before_starting_anything(tmp_path):
    # The installed version is faked in a fresh interpreter; the command fails before Ray is imported.
    code = (
        "import importlib.metadata as m, sys; real = m.version;"
        "m.version = lambda name: '2.61.0' if name == 'ray' else real(name);"
        "from jobs.cli import main; rc = main(sys.argv[1:]);"
        "print('RAY_IMPORTED', 'ray' in sys.modules, file=sys.stderr); sys.exit(rc)"
    )
    proc = subprocess.run([sys.executable, "-c", code, "train", str(tmp_path / "spec.yaml")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "Ray 2.61.0 is installed" in proc.stderr and "cluster/ray_compat.py" in proc.stderr
    assert "RAY_IMPORTED False" in proc.stderr


def test_train_env_var_names_are_rays():
    from ray.train.v2._internal import constants

    assert constants.HEALTH_CHECK_INTERVAL_S_ENV_VAR == ray_compat.TRAIN_HEALTH_CHECK_INTERVAL_ENV
    assert constants.WORKER_GROUP_START_TIMEOUT_S_ENV_VAR == ray_compat.TRAIN_WORKER_GROUP_START_TIMEOUT_ENV
    assert constants.ENABLE_PREEMPTION_WATCHER_ENV_VAR == ray_compat.TRAIN_PREEMPTION_WATCHER_ENV
    assert ray_compat.train_driver_env(local=True) == {ray_compat.TRAIN_HEALTH_CHECK_INTERVAL_ENV: "0.1", ray_compat.TRAIN_PREEMPTION_WATCHER_ENV: "0"}
    assert ray_compat.TRAIN_PREEMPTION_WATCHER_ENV not in ray_compat.train_driver_env(local=False)


def test_serve_reads_the_direct_ingress_env_vars():
    # Serve reads them once, on import: a fresh interpreter with them set must see them.
    code = "from ray.serve._private import constants as c; print(c.RAY_SERVE_ENABLE_DIRECT_INGRESS, c.RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S)"
    env = {**_plain_env(), **ray_compat.serve_cluster_env()}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "2.0"]


def _plain_env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith("RAY_SERVE_")}


def test_tune_console_switch_is_rays(monkeypatch):
    from ray.tune.experimental.output import AirVerbosity, get_air_verbosity

    monkeypatch.delenv(ray_compat.TUNE_NEW_OUTPUT_ENV, raising=False)
    assert get_air_verbosity(0) == AirVerbosity.SILENT  # the new reporter, which prints a header anyway
    with ray_compat.tune_console(verbose=False):
        assert get_air_verbosity(0) is None  # the older reporter, silent at verbose=0
    assert ray_compat.TUNE_NEW_OUTPUT_ENV not in os.environ
    with ray_compat.tune_console(verbose=True):
        assert get_air_verbosity(0) == AirVerbosity.SILENT


def test_job_config_env_and_head_resource_are_rays(monkeypatch):
    from ray._common.constants import HEAD_NODE_RESOURCE_NAME
    from ray._private.runtime_env.constants import RAY_JOB_CONFIG_JSON_ENV_VAR

    assert RAY_JOB_CONFIG_JSON_ENV_VAR == ray_compat.JOB_CONFIG_ENV
    assert HEAD_NODE_RESOURCE_NAME == ray_compat.HEAD_NODE_RESOURCE
    monkeypatch.delenv(ray_compat.JOB_CONFIG_ENV, raising=False)
    assert ray_compat.job_env_vars() == {}
    monkeypatch.setenv(ray_compat.JOB_CONFIG_ENV, json.dumps({"runtime_env": {"env_vars": {"HF_HUB_OFFLINE": "1"}}}))
    assert ray_compat.job_env_vars() == {"HF_HUB_OFFLINE": "1"}


def test_trainer_without_datasets_drops_only_the_datasets_callback():
    from ray.train import ScalingConfig
    from ray.train.torch import TorchTrainer

    def build():
        return TorchTrainer(lambda config: None, scaling_config=ScalingConfig(num_workers=1))

    stock = [type(c).__name__ for c in build()._create_default_callbacks()]
    lean = [type(c).__name__ for c in ray_compat.without_unused_datasets_manager(build())._create_default_callbacks()]
    assert "DatasetsCallback" in stock
    assert lean == [name for name in stock if name != "DatasetsCallback"]


def test_train_reports_are_logged_outside_ray_train_by_file_path():
    # The reason for quiet_train_worker_reports: if Ray moves this logger under "ray.train",
    # Train's own LoggingConfig filters it and the shim can go.
    from ray.train.v2._internal.execution import context

    assert context.logger.name == context.__file__
    assert "Reporting training result" in Path(context.__file__).read_text()
    for verbose, level in ((False, logging.WARNING), (True, logging.INFO)):
        ray_compat.quiet_train_worker_reports(verbose=verbose)
        assert context.logger.level == level


def test_tune_report_queue_api():
    from ray.train._internal.session import _TrainSession, get_session

    assert callable(_TrainSession._get_or_create_inter_actor_queue)
    assert get_session() is None  # outside a trial


def test_serve_target_group_api():
    from ray.serve._private.client import ServeControllerClient
    from ray.serve._private.common import REPLICA_ID_FULL_ID_STR_PREFIX, RequestProtocol
    from ray.serve._private.controller import ServeController
    from ray.serve.context import _get_global_client

    assert REPLICA_ID_FULL_ID_STR_PREFIX == "SERVE_REPLICA::" and RequestProtocol.HTTP.value == "HTTP"
    assert "app_name" in inspect.signature(ServeController.get_target_groups).parameters
    assert "raise_if_no_controller_running" in inspect.signature(_get_global_client).parameters
    assert isinstance(inspect.getattr_static(ServeControllerClient, "http_config"), property)
    assert hasattr(ServeControllerClient, "_controller") or "_controller" in inspect.getsource(ServeControllerClient.__init__)


def test_launcher_config_is_validated_by_rays_schema():
    import yaml
    from jsonschema import ValidationError

    config = yaml.safe_load(Path("cluster.yaml").read_text())
    assert ray_compat.validate_launcher_config(config)["available_node_types"]
    with pytest.raises(ValidationError):
        ray_compat.validate_launcher_config({**config, "max_workerz": 3})


def test_serve_replica_class_names_and_per_node_resources(ray_cluster):
    import ray
    from ray.serve._private.common import DeploymentID

    assert DeploymentID(name="model", app_name="biomed").to_replica_actor_class_name() == f"{ray_compat.SERVE_REPLICA_CLASS_PREFIX}biomed:model"
    nodes = ray_compat.resources_per_node()
    assert list(nodes) == [ray.get_runtime_context().get_node_id()]
    (node,) = nodes.values()
    assert node["total"]["CPU"] == 2.0 and 0.0 <= node["free"]["CPU"] <= 2.0


def test_autoscaler_status_key_and_readonly_node_types_are_rays(ray_cluster):
    import ray._private.ray_constants as ray_constants
    from ray.autoscaler._private.util import format_readonly_node_type

    assert ray_compat.AUTOSCALER_STATUS_KEY == ray_constants.DEBUG_AUTOSCALING_STATUS
    assert format_readonly_node_type("abc") == f"{ray_compat.READONLY_NODE_TYPE_PREFIX}abc"
    # The embedded Ray runs the monitor with the readonly provider: no autoscaler. (A real one,
    # with node types from a config, is tests/test_autoscaler.py.)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and ray_compat.autoscaler_info() is None and not _status_written():
        time.sleep(0.5)
    assert _status_written() and ray_compat.autoscaler_info() is None


def _status_written() -> bool:
    from ray.experimental.internal_kv import _internal_kv_get

    return _internal_kv_get(ray_compat.AUTOSCALER_STATUS_KEY) is not None


def test_train_wait_stack_traces_become_one_line():
    import importlib

    from ray.exceptions import ActorDiedError
    from ray.train.v2._internal.exceptions import WorkerGroupStartupTimeoutError

    for name in (ray_compat.TRAIN_CONTROLLER_LOGGER, ray_compat.TRAIN_BACKEND_SETUP_LOGGER):
        assert importlib.import_module(name).logger.name == name
    setup_hook = importlib.import_module("ray._private.runtime_env.setup_hook")
    assert ray_compat.WORKER_SETUP_HOOK_KEY in inspect.getsource(setup_hook)
    assert callable(getattr(importlib.import_module("cluster.ray_compat"), ray_compat.WORKER_SETUP_HOOK.rsplit(".", 1)[1]))

    def record(error: Exception, message: str) -> logging.LogRecord:
        return logging.LogRecord(ray_compat.TRAIN_CONTROLLER_LOGGER, logging.ERROR, __file__, 1, message, ("x",), (type(error), error, None))

    timeout = record(WorkerGroupStartupTimeoutError(num_workers=2), "Error in control loop iteration: %s")
    assert ray_compat.TrainWaitLines().filter(timeout) and timeout.exc_info is None and timeout.levelname == "WARNING"
    assert timeout.getMessage().startswith("waiting for room for 2 Train worker(s)")
    died = record(ActorDiedError(), "Graceful shutdown of backend failed%s")
    assert ray_compat.TrainWaitLines().filter(died) and died.exc_info is None and died.getMessage() == "Graceful shutdown of backend failedx (a worker's actor died: ActorDiedError)"
    other = record(ValueError("a bug"), "Error in control loop iteration: %s")
    assert ray_compat.TrainWaitLines().filter(other) and other.exc_info is not None  # real errors keep their trace
