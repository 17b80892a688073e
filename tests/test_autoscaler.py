"""A cluster with an autoscaler: Ray's own `ray start --head --autoscaling-config` with the fake
multi-node provider (RAY_FAKE_CLUSTER=1, what Ray's autoscaler tests use: real raylets started
as nodes are asked for). The head holds no CPU; node type `cpu1` (1 CPU) may add up to 2 nodes.

`biomed train --address` on it must see the autoscaler, ask it for the workers' bundles (nothing
is pending before fit(), so it would not scale by itself) and run once the nodes are up, where a
fixed-size cluster would exit 2 at once.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import ray_test_env, tiny_spec, write_spec

ROOT = Path(__file__).resolve().parents[1]
# The fake provider's head id, as ray/autoscaler/_private/fake_multi_node/node_provider.py names it (Ray 2.60).
FAKE_HEAD_NODE_ID = "fffffffffffffffffffffffffffffffffffffffffffffffffff00000"


def _autoscaling_config(gcs_port: int) -> dict:
    return {
        "cluster_name": "biomed-fake", "max_workers": 2, "upscaling_speed": 10, "idle_timeout_minutes": 5,
        "provider": {"type": "fake_multinode", "use_node_id_as_ip": True, "disable_node_updaters": True, "disable_launch_config_check": True, "gcs_address": f"127.0.0.1:{gcs_port}"},
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": 0}, "node_config": {}, "max_workers": 0},
            "cpu1": {"resources": {"CPU": 1}, "node_config": {}, "min_workers": 0, "max_workers": 2},
        },
        "head_node_type": "ray.head.default", "auth": {"ssh_user": "ray"}, "file_mounts": {}, "cluster_synced_files": [],
        "file_mounts_sync_continuously": False, "initialization_commands": [], "setup_commands": [], "head_setup_commands": [],
        "worker_setup_commands": [], "head_start_ray_commands": [], "worker_start_ray_commands": [],
    }


def _wait_for_port(port: int, process: subprocess.Popen, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, "the autoscaling head exited"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.25)
    raise AssertionError("the autoscaling head did not come up")


@pytest.fixture(scope="module")
def autoscaling_head(tmp_path_factory):
    from cluster.local_head import ensure_auth_token, free_port, stop_pid

    root = tmp_path_factory.mktemp("autoscaling")
    gcs_port, dashboard_port = free_port(), free_port()
    (root / "autoscaling.json").write_text(json.dumps(_autoscaling_config(gcs_port)))
    ray_test_env()
    # `ray start --head` turns token auth on only when a token exists (a fresh HOME has none).
    ensure_auth_token()
    env = {**os.environ, "RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1", "RAY_AUTH_MODE": "token"}
    command = [
        str(Path(sys.executable).with_name("ray")), "start", "--head", "--block", f"--temp-dir={tempfile.gettempdir()}/biomed-as-{gcs_port}",
        "--node-ip-address=127.0.0.1", f"--port={gcs_port}", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard_port}",
        f"--dashboard-agent-listen-port={free_port()}", f"--ray-client-server-port={free_port()}", "--disable-usage-stats",
        "--num-cpus=0", f"--autoscaling-config={root / 'autoscaling.json'}",
    ]
    # Its own session: stopping its process group stops the head and the nodes its autoscaler started.
    head = subprocess.Popen(command, stdout=(root / "head.log").open("wb"), stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        _wait_for_port(dashboard_port, head)
        yield {"address": f"127.0.0.1:{gcs_port}", "root": root}
    finally:
        stop_pid(head.pid)


def _biomed(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    env.pop("RAY_ADDRESS", None)
    return subprocess.run([sys.executable, "-m", "jobs.cli", *args], capture_output=True, text=True, timeout=420, env=env, cwd=cwd)


def test_a_run_asks_the_autoscaler_for_its_workers_and_runs_on_the_nodes_it_adds(autoscaling_head, planted_dir):
    root = autoscaling_head["root"]
    base = tiny_spec(planted_dir, root / "runs")
    spec = write_spec(root / "spec.yaml", tiny_spec(planted_dir, root / "runs", training={**base["training"], "epochs": 4}, scaling={"num_workers": 2}))
    # The monitor publishes the node types a moment after the head is up.
    time.sleep(3)
    done = _biomed("train", str(spec), "--address", autoscaling_head["address"], "--json", cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    # Both workers ran, each on a node of type cpu1 that the autoscaler added for them.
    assert summary["workers"]["world_size"] == 2
    node_ids = summary["workers"]["node_ids"]
    assert len(set(node_ids)) == 2 and FAKE_HEAD_NODE_ID not in node_ids
    assert summary["test_metrics"]["accuracy"] > 0.9

