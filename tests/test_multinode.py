"""Across nodes: a head and two 1-CPU worker nodes on `ray.cluster_utils.Cluster` (real raylets,
the way Ray's own tests simulate a cluster), nodes removed and added while jobs run.

The session's single-node Ray is stopped for this module and started again after it: a driver
joins one cluster at a time.
"""

from __future__ import annotations

import csv
import os
import threading
import time
from pathlib import Path

import pytest

from conftest import latest_committed, ray_test_env, start_session_ray, tiny_spec

NODE_ARGS = {"num_cpus": 1, "object_store_memory": 100 * 1024**2}


class Nodes:
    """The test cluster: `add()` a 1-CPU worker node, `remove(node_id)` one (its raylet and
    every process on it are killed, as when a machine is lost)."""

    def __init__(self, cluster):
        self.cluster, self.by_id = cluster, {}

    def add(self):
        node = self.cluster.add_node(**NODE_ARGS)
        self.cluster.wait_for_nodes()
        self.by_id[node.node_id] = node
        return node.node_id

    def remove(self, node_id: str) -> None:
        self.cluster.remove_node(self.by_id.pop(node_id))

    @property
    def worker_ids(self) -> set[str]:
        return set(self.by_id)


@pytest.fixture(scope="module")
def nodes():
    import ray
    from ray.cluster_utils import Cluster

    from cluster.ray_compat import TRAIN_WORKER_GROUP_START_TIMEOUT_ENV

    was_up = ray.is_initialized()
    if was_up:
        ray.shutdown()
    ray_test_env()
    # These nodes start in seconds: a worker group that cannot be placed is given 15 s, not 60,
    # before Train tries again (an elastic restart may first count a node just lost).
    os.environ[TRAIN_WORKER_GROUP_START_TIMEOUT_ENV] = "15"
    # The head holds no CPU: every worker, trial and replica lands on a worker node, and the
    # drivers' own actors (Train's controller, Serve's) stay on the head, which is never removed.
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "dashboard_host": "127.0.0.1", "object_store_memory": 150 * 1024**2})
    handle = Nodes(cluster)
    for _ in range(2):
        handle.add()
    ray.init(address=cluster.address, log_to_driver=True)
    yield handle
    ray.shutdown()
    cluster.shutdown()
    os.environ.pop(TRAIN_WORKER_GROUP_START_TIMEOUT_ENV)
    if was_up:
        start_session_ray()


def epoch_rows(run_dir: Path) -> list[dict]:
    if not (run_dir / "metrics.csv").is_file():
        return []
    with (run_dir / "metrics.csv").open() as f:
        return [r for r in csv.DictReader(f) if r["kind"] == "epoch"]


def in_thread(call) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def target():
        try:
            outcome["value"] = call()
        except BaseException as error:  # surfaced by the test's assertion
            outcome["error"] = error

    runner = threading.Thread(target=target, daemon=True)
    runner.start()
    return runner, outcome


def wait_until(condition, *, timeout_s: float, what: str, runner: threading.Thread | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert runner is None or runner.is_alive(), f"the run ended before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_spread_places_one_worker_per_node_and_registers_a_usable_model(nodes, planted_dir, tmp_path):
    from jobs.spec import parse_spec
    from jobs.train import train

    spec = tiny_spec(planted_dir, tmp_path, training={**tiny_spec(planted_dir, tmp_path)["training"], "epochs": 3}, scaling={"num_workers": 2, "placement_strategy": "SPREAD"})
    summary = train(parse_spec(spec))
    assert summary["workers"]["world_size"] == 2
    assert set(summary["workers"]["node_ids"]) == nodes.worker_ids  # one rank on each worker node
    assert summary["registered"]["version"] == 1
    assert summary["test_metrics"]["accuracy"] > 0.9


# Long enough on one worker for the node added back to be seen (Ray Data's autoscaling coordinator,
# which elastic Train asks, refreshes the nodes every 20 s) and the group to grow again.
EPOCHS = 30


def test_elastic_run_shrinks_when_a_node_is_lost_and_grows_back_when_one_returns(nodes, planted_dir, tmp_path):
    from jobs.spec import parse_spec
    from jobs.train import train

    base = tiny_spec(planted_dir, tmp_path)
    spec = parse_spec(tiny_spec(
        planted_dir, tmp_path, training={**base["training"], "epochs": EPOCHS},
        scaling={"num_workers": [1, 2], "placement_strategy": "SPREAD", "resize_check_interval_s": 1.0},
    ))
    runner, outcome = in_thread(lambda: train(spec))
    run_dirs = lambda: [p for p in tmp_path.iterdir() if p.name.startswith("planted-")]  # noqa: E731
    wait_until(lambda: run_dirs() and latest_committed(run_dirs()[0]).startswith("checkpoint_epoch_0001"), timeout_s=240, what="epoch 1", runner=runner)
    run_dir = run_dirs()[0]
    lost = sorted(nodes.worker_ids)[-1]
    nodes.remove(lost)
    # Training goes on with the rank that is left, from the latest checkpoint...
    wait_until(lambda: any(r["world_size"] == "1" for r in epoch_rows(run_dir)), timeout_s=180, what="an epoch on one worker", runner=runner)
    nodes.add()
    runner.join(timeout=300)
    assert not runner.is_alive() and "error" not in outcome, outcome.get("error")
    summary = outcome["value"]
    rows = epoch_rows(run_dir)
    # ...and is back on two when the run ends.
    assert summary["workers"]["world_size"] == 2 and len(set(summary["workers"]["node_ids"])) == 2
    assert [int(r["epoch"]) for r in rows] == list(range(1, EPOCHS + 1))
    assert {r["world_size"] for r in rows} == {"1", "2"}
    # Every example once per epoch, at either world size (480 rows, 10% held out for validation).
    trained = summary["data"]["rows"]["train"]
    assert {int(r["examples"]) for r in rows} == {trained}
    assert summary["test_metrics"]["accuracy"] > 0.9


def test_fixed_size_run_waits_for_a_lost_node_and_resumes_when_it_returns(nodes, planted_dir, tmp_path):
    from jobs.spec import parse_spec
    from jobs.train import train

    base = tiny_spec(planted_dir, tmp_path)
    spec = parse_spec(tiny_spec(planted_dir, tmp_path, training={**base["training"], "epochs": 4}, scaling={"num_workers": 2, "placement_strategy": "SPREAD"}))
    runner, outcome = in_thread(lambda: train(spec))
    run_dirs = lambda: [p for p in tmp_path.iterdir() if p.name.startswith("planted-")]  # noqa: E731
    wait_until(lambda: run_dirs() and latest_committed(run_dirs()[0]).startswith("checkpoint_epoch_0001"), timeout_s=240, what="epoch 1", runner=runner)
    run_dir = run_dirs()[0]
    nodes.remove(sorted(nodes.worker_ids)[-1])
    time.sleep(5)
    # Two workers cannot be placed on what is left: nothing is trained meanwhile.
    assert runner.is_alive() and latest_committed(run_dir).startswith(("checkpoint_epoch_0001", "checkpoint_epoch_0002"))
    waited_at = [int(r["epoch"]) for r in epoch_rows(run_dir)]
    nodes.add()
    runner.join(timeout=300)
    assert not runner.is_alive() and "error" not in outcome, outcome.get("error")
    summary = outcome["value"]
    rows = epoch_rows(run_dir)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4] and {r["world_size"] for r in rows} == {"2"}
    assert waited_at[-1] < 4
    assert set(summary["workers"]["node_ids"]) == nodes.worker_ids
    assert summary["test_metrics"]["accuracy"] > 0.9
