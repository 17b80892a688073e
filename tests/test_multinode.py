"""Across nodes: a head and two 1-CPU worker nodes on `ray.cluster_utils.Cluster` (real raylets,
the way Ray's own tests simulate a cluster), nodes removed and added while jobs run.

The session's single-node Ray is stopped for this module and started again after it: a driver
joins one cluster at a time.
"""

from __future__ import annotations

import csv
import json
import os
import threading
import time
from pathlib import Path

import psutil
import pytest
import torch
from safetensors.torch import load_file

from jobs.spec import parse_spec
from jobs.worker import STATE_FILE
from conftest import latest_committed, our_processes, ray_test_env, start_session_ray, tiny_spec

NODE_ARGS = {"num_cpus": 1, "object_store_memory": 100 * 1024**2}


# A node whose raylet is not registered within the fixed 30 s of Ray's node start-up
# (ray/_private/node.py, Ray 2.60) raises; on a loaded 2-core CI machine that happened once in
# many runs. Such a start is stopped and tried again rather than failing every later test of the
# module for want of a node.
NODE_START_ATTEMPTS = 3


def stop_processes(procs: list[psutil.Process]) -> None:
    """SIGKILL these processes and everything under them, and reap them."""
    family = [d for p in procs if p.is_running() for d in [p, *p.children(recursive=True)]]
    for proc in family:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(family, timeout=30)


def reap_zombies() -> None:
    """Reap this process's children that exited but were not waited for: Ray gives up waiting
    for a killed raylet after 30 s (one stuck in a slow disk write), and the zombie it leaves
    would otherwise stay in the process table for the rest of the session."""
    for proc in psutil.Process().children():
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                proc.wait(timeout=0)
        except (psutil.NoSuchProcess, psutil.TimeoutExpired):
            continue


class Nodes:
    """The test cluster: `add()` a 1-CPU worker node, `remove(node_id)` one (its raylet and
    every process on it are killed, as when a machine is lost)."""

    def __init__(self, cluster):
        self.cluster, self.by_id = cluster, {}

    def add(self):
        for attempt in range(1, NODE_START_ATTEMPTS + 1):
            before = set(our_processes("ray", recursive=False))
            try:
                node = self.cluster.add_node(**NODE_ARGS)
                break
            except Exception as error:
                if "timed out during startup" not in str(error) or attempt == NODE_START_ATTEMPTS:
                    raise
                started = our_processes("ray", recursive=False)
                stop_processes([p for pid, p in started.items() if pid not in before])
                reap_zombies()
        self.cluster.wait_for_nodes()
        self.by_id[node.node_id] = node
        return node.node_id

    def remove(self, node_id: str) -> None:
        self.cluster.remove_node(self.by_id.pop(node_id))
        reap_zombies()

    @property
    def worker_ids(self) -> set[str]:
        return set(self.by_id)


@pytest.fixture(scope="module")
def nodes():
    import ray
    from ray.cluster_utils import Cluster

    from cluster.ray_compat import TRAIN_WORKER_GROUP_START_TIMEOUT_ENV, job_runtime_env

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
    ray.init(address=cluster.address, log_to_driver=True, runtime_env=job_runtime_env())
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


def committed_metrics(run_dir: Path) -> dict:
    """The metrics reported with a Train run's latest committed checkpoint."""
    snapshot = json.loads((run_dir / "checkpoint_manager_snapshot.json").read_text())
    return snapshot["latest_checkpoint_result"]["metrics"]


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


def two_worker_spec(planted_dir: Path, storage: Path, placement: str) -> dict:
    return tiny_spec(planted_dir, storage, training={**tiny_spec(planted_dir, storage)["training"], "epochs": 3}, scaling={"num_workers": 2, "placement_strategy": placement})


@pytest.fixture(scope="module")
def single_node_run(ray_cluster, planted_dir, tmp_path_factory) -> dict:
    """The same 2-worker run on the session's single node (before the cluster replaces it)."""
    from jobs.train import train

    return train(parse_spec(two_worker_spec(planted_dir, tmp_path_factory.mktemp("single"), "PACK")))


@pytest.fixture(scope="module")
def spread_run(single_node_run, nodes, planted_dir, tmp_path_factory) -> dict:
    """A 2-worker SPREAD run, registered (the Serve test serves it)."""
    from jobs.train import train

    storage = tmp_path_factory.mktemp("spread")
    summary = train(parse_spec(two_worker_spec(planted_dir, storage, "SPREAD")))
    return {"summary": summary, "storage": storage, "worker_ids": set(nodes.worker_ids), "single_node": single_node_run}


def test_spread_places_one_worker_per_node_and_registers_a_usable_model(spread_run):
    from biomed.checkpoint import Predictor

    summary, nodes_then = spread_run["summary"], spread_run["worker_ids"]
    assert summary["workers"]["world_size"] == 2
    assert set(summary["workers"]["node_ids"]) == nodes_then  # one rank on each worker node
    assert (summary["workers"]["device"], summary["workers"]["collective_backend"]) == ("cpu", "gloo")
    assert summary["registered"]["version"] == 1
    assert summary["test_metrics"]["accuracy"] > 0.9
    # The registered folder is what the same run on one node registers, weight for weight.
    here, there = (load_file(Path(s["registered"]["path"]) / "model.safetensors") for s in (summary, spread_run["single_node"]))
    assert here.keys() == there.keys()
    assert max(float((here[k] - there[k]).abs().max()) for k in here) < 1e-6
    predictor = Predictor(directory=Path(summary["registered"]["path"]))
    assert predictor.describe(predictor.predict(["a clinical note"])[0])["label"] in {"cardiac", "renal", "hepatic"}


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


def test_fixed_size_run_waits_for_a_lost_node_and_resumes_when_it_returns(nodes, planted_dir, tmp_path, capfd):
    from jobs.spec import parse_spec
    from jobs.train import train

    base = tiny_spec(planted_dir, tmp_path)
    spec = parse_spec(tiny_spec(planted_dir, tmp_path, training={**base["training"], "epochs": 4}, scaling={"num_workers": 2, "placement_strategy": "SPREAD"}))
    runner, outcome = in_thread(lambda: train(spec))
    run_dirs = lambda: [p for p in tmp_path.iterdir() if p.name.startswith("planted-")]  # noqa: E731
    wait_until(lambda: run_dirs() and latest_committed(run_dirs()[0]).startswith("checkpoint_epoch_0001"), timeout_s=240, what="epoch 1", runner=runner)
    run_dir = run_dirs()[0]
    nodes.remove(sorted(nodes.worker_ids)[-1])
    # The controller waits out its start timeout (15 s here) and says so in one line. (Whether
    # any trace is left is not asserted: in the full suite a handler left on a closed capture
    # stream by an earlier test prints "--- Logging error ---" traces of its own.)
    said = []
    wait_until(lambda: said.append(capfd.readouterr().err) or "waiting for room for 2 Train worker(s)" in "".join(said), timeout_s=90, what="the waiting line", runner=runner)
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


def test_search_trials_run_on_both_nodes_and_a_trial_on_a_lost_node_resumes_from_its_checkpoint(nodes, planted_dir, tmp_path):
    from jobs.resolve import resolve
    from jobs.trial import trial_job, trial_run_name
    from jobs.tune import experiment_name, tune_search

    base = tiny_spec(planted_dir, tmp_path, name="planted-search", scaling={"num_workers": 1})
    raw = {
        **base, "training": {**base["training"], "epochs": 5}, "failure": {"max_failures": 1},
        # A planted best: at 1e-5 the tiny BERT barely moves in 5 epochs.
        "tune": {"search_space": {"learning_rate": {"grid": [3e-3, 1e-5]}}, "search_algorithm": "grid", "num_samples": 1, "max_concurrent_trials": 2, "scheduler": {"type": "none"}},
    }
    spec = resolve(parse_spec(raw))
    good = tmp_path / trial_run_name(trial_job(spec, {"learning_rate": 3e-3}), experiment_name(spec))
    runner, outcome = in_thread(lambda: tune_search(spec))
    wait_until(lambda: latest_committed(good).startswith("checkpoint_epoch_0002"), timeout_s=300, what="the good trial's epoch 2", runner=runner)
    (host,) = set(committed_metrics(good)["worker_node_ids"].split(","))
    # Tune may have put the other trial's driver (a 0-CPU actor) on that node too: it is then
    # retried as well, and resumes past any epoch whose report died with it.
    nodes.remove(host)
    nodes.add()
    runner.join(timeout=400)
    assert not runner.is_alive() and "error" not in outcome, outcome.get("error")
    summary = outcome["value"]
    assert summary["best_trial"]["config"] == {"learning_rate": 3e-3}
    trials = {t["config"]["learning_rate"]: t for t in summary["trials"]}
    assert all(t["status"] == "TERMINATED" and t["epochs_run"] == 5 for t in trials.values())
    # The two trials ran side by side, one per node; the good one moved to the node added back.
    assert trials[1e-5]["node_ids"][0] != host and host in trials[3e-3]["node_ids"] and len(trials[3e-3]["node_ids"]) == 2
    starts = torch.load(good / "checkpoint_epoch_0005" / STATE_FILE, weights_only=True)["attempt_start_epochs"]
    assert len(starts) == 2 and starts[0] == 0 and starts[1] >= 2, starts  # resumed, not restarted


def test_two_replicas_on_two_nodes_lose_no_request_when_a_node_is_lost(nodes, spread_run, monkeypatch):
    from ray import serve
    from ray.util.state import list_actors

    from cluster.local_head import free_port
    from cluster.ray_compat import SERVE_REPLICA_CLASS_PREFIX
    from serving.client import Client
    from serving.deploy import deploy

    monkeypatch.setenv("BIOMED_SERVE_TOKEN", "test-token-0123456789")
    port = free_port()
    # One proxy, on the head: the simulated nodes share one host, so one port.
    settings = {"port": port, "proxy_location": "HeadOnly", "min_replicas": 2, "max_replicas": 2, "num_cpus_per_replica": 1.0}
    deploy(["planted"], storage_path=spread_run["storage"], overrides=settings)

    def replica_nodes() -> list[str]:
        actors = list_actors(filters=[("state", "=", "ALIVE")], detail=True, raise_on_missing_output=False)
        return sorted(a.node_id for a in actors if a.class_name.startswith(SERVE_REPLICA_CLASS_PREFIX))

    def running() -> bool:
        replicas = serve.status().applications["biomed"].deployments["ModelServer"].replica_states
        return replicas.get("RUNNING", 0) == 2 and len(set(replica_nodes())) == 2

    wait_until(running, timeout_s=60, what="two running replicas")
    assert set(replica_nodes()) == nodes.worker_ids
    stop, counts, failures = threading.Event(), {"ok": 0}, []

    def load() -> None:  # bounded: 4 clients, one request in flight each
        with Client(f"http://127.0.0.1:{port}") as client:
            while not stop.is_set():
                try:
                    client.predict("planted", ["chest pain and raised troponin"])
                    counts["ok"] += 1
                except Exception as error:
                    failures.append(repr(error))

    clients = [threading.Thread(target=load, daemon=True) for _ in range(4)]
    for c in clients:
        c.start()
    time.sleep(2)
    lost = replica_nodes()[-1]
    nodes.remove(lost)
    before = counts["ok"]
    nodes.add()
    wait_until(running, timeout_s=120, what="the lost replica back on the new node")
    time.sleep(2)
    stop.set()
    for c in clients:
        c.join(timeout=60)
    moved = lost not in replica_nodes()
    serve.delete("biomed")
    assert failures == [], failures[:3]
    assert before > 10 and counts["ok"] > before + 10
    assert moved


def test_storage_must_be_absolute_and_seen_by_every_node(nodes, planted_dir, tmp_path, monkeypatch):
    from cluster.storage import StorageNotShared, check_storage_shared
    from jobs.train import train

    # Every node of this cluster shares the machine's filesystem: a probe task on each reads the marker.
    assert check_storage_shared(str(tmp_path)) == 3
    assert not list(tmp_path.glob(".biomed-shared-check-*"))  # the marker is removed
    monkeypatch.chdir(tmp_path)
    spec = parse_spec(tiny_spec(planted_dir, tmp_path, storage_path="rel-runs"))
    with pytest.raises(StorageNotShared, match="'rel-runs' is relative, and this cluster has 3 nodes"):
        train(spec)
    assert not (tmp_path / "rel-runs").exists()  # refused before anything was written
