"""Free-resource checks before fit(): a job that cannot fit beside Serve replicas exits 2 within
seconds saying what holds the cluster; one that will fit once another job ends waits, saying so."""

from __future__ import annotations

import io
import logging
import threading
import time
from pathlib import Path

import pytest
from ray import serve

from cluster.capacity import Demand, wait_for_capacity
from jobs.cli import main
from tests.conftest import tiny_spec, write_spec


@serve.deployment(ray_actor_options={"num_cpus": 1})
class OneCpuReplica:
    """Stands for a deployed model: a replica holding one of the cluster's two CPUs."""

    def __call__(self, request) -> str:
        return "ok"


def test_a_job_that_cannot_fit_beside_serve_replicas_exits_2_naming_them(ray_cluster, planted_dir, tmp_path, capsys):
    from cluster.local_head import free_port

    serve.start(http_options={"host": "127.0.0.1", "port": free_port()})
    serve.run(OneCpuReplica.bind(), name="holder", route_prefix="/holder")
    try:
        spec_file = write_spec(tmp_path / "spec.yaml", tiny_spec(planted_dir, tmp_path / "runs"))  # 2 workers of 1 CPU
        started = time.monotonic()
        assert main(["train", str(spec_file)]) == 2
        elapsed = time.monotonic() - started
    finally:
        serve.shutdown()
    err = capsys.readouterr().err
    assert elapsed < 30, elapsed
    for part in (
        "2 Train worker(s) (scaling.num_workers) need 2 x (1 CPU): 1 of 2 CPUs are free on 1 node(s)",
        "1 Serve replica(s) hold 1 (stop them with `biomed serve shutdown`)",
        "or ask for fewer: scaling.num_workers: 1 fits",
    ):
        assert part in err, err[-2000:]
    assert "Traceback" not in err and not list(Path(tmp_path / "runs").rglob("checkpoint_*"))  # nothing started


def test_a_job_waits_for_another_to_free_the_cpus_it_needs(ray_cluster):
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    other = placement_group([{"CPU": 1}])  # another run's worker, holding 1 of the 2 CPUs
    ray.get(other.ready(), timeout=30)
    lines = io.StringIO()
    handler, logger = logging.StreamHandler(lines), logging.getLogger("biomed")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    waited: dict = {}
    demand = Demand(what="2 Train worker(s)", bundles=2, cpus=1.0)
    waiter = threading.Thread(target=lambda: waited.update(s=wait_for_capacity(demand, fixed_size=True, progress_s=0.5, poll_s=0.1)), daemon=True)
    try:
        waiter.start()
        time.sleep(2.0)
        assert waiter.is_alive(), "it went on with 1 CPU free"
        remove_placement_group(other)
        waiter.join(timeout=30)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert not waiter.is_alive() and waited["s"] >= 1.5
    assert "waiting" in lines.getvalue() and "other jobs hold 1" in lines.getvalue()


def test_an_autoscalers_published_node_types_bound_what_can_ever_fit():
    from cluster.capacity import _check_node_groups
    from cluster.resources import ResourcesError

    groups = {"version": "v2", "node_groups": [{"name": "cpu4", "resources": {"CPU": 4.0}, "max_count": 2}, {"name": "gpu1", "resources": {"CPU": 8.0, "GPU": 1.0}, "max_count": 1}]}
    alive = [{"CPU": 1.0, "GPU": 0.0}]
    _check_node_groups(Demand(what="9 Train workers", bundles=9, cpus=1.0), groups, alive)  # 1 + 4 x 2 = 9 fit with the added nodes
    with pytest.raises(ResourcesError) as refused:
        _check_node_groups(Demand(what="2 Train workers", bundles=2, cpus=1.0, gpus=1.0), groups, alive)
    message = str(refused.value)
    assert "2 Train workers need 2 x (1 CPU + 1 GPU)" in message and "gpu1: up to 1 x 8 CPU + 1 GPU" in message and message.endswith("can hold: 1")
    unlimited = {"version": "v2", "node_groups": [{"name": "cpu4", "resources": {"CPU": 4.0}, "max_count": -1}]}
    _check_node_groups(Demand(what="100 Train workers", bundles=100, cpus=1.0), unlimited, alive)
    _check_node_groups(Demand(what="100 Train workers", bundles=100, cpus=1.0), {"version": "v1", "node_groups": None}, alive)  # v1: unknown, no refusal
