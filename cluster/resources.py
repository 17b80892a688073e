"""What a cluster can hold, and whether a spec's workers fit in it.

Two sources of node shapes: a Ray cluster launcher file (`cluster.yaml`: the node types the
autoscaler may launch, up to their max_workers) and a running cluster (its live nodes, through
the dashboard's State API). Both are checked the same way, before anything is submitted.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import yaml


class ClusterConfigError(ValueError):
    """A cluster launcher file that Ray's launcher would reject."""


class ClusterUnavailable(RuntimeError):
    """The cluster cannot be reached, or refused our credentials."""


class ResourcesError(ValueError):
    """A spec that asks for more than the cluster has; the message names the field and value."""


@dataclass(frozen=True)
class NodeShape:
    """`count` nodes with `num_cpus` CPUs and `num_gpus` GPUs each."""

    name: str
    num_cpus: float
    num_gpus: float
    count: int


def load_cluster_config(path: str | Path) -> dict:
    """Read a cluster launcher YAML and validate it against Ray's own schema (ray-schema.json,
    the one `ray up` uses), plus the cross-references the schema cannot express."""
    from jsonschema import ValidationError

    from cluster.ray_compat import validate_launcher_config

    path = Path(path)
    if not path.is_file():
        raise ClusterConfigError(f"cluster config not found: {str(path)!r}")
    config = yaml.safe_load(path.read_text())
    if not isinstance(config, dict):
        raise ClusterConfigError(f"{path}: expected a mapping at the top level")
    try:
        config = validate_launcher_config(config)
    except ValidationError as error:
        where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        raise ClusterConfigError(f"{path}: {where}: {error.message}") from None
    except (ValueError, KeyError, RuntimeError) as error:
        raise ClusterConfigError(f"{path}: {error}") from None
    types = config.get("available_node_types") or {}
    head = config.get("head_node_type")
    if head not in types:
        raise ClusterConfigError(f"{path}: head_node_type {head!r} is not one of available_node_types {sorted(types)}")
    for name, node_type in types.items():
        low, high = node_type.get("min_workers", 0), node_type.get("max_workers", 0)
        if low > high:
            raise ClusterConfigError(f"{path}: available_node_types.{name}: min_workers {low} > max_workers {high}")
    return config


def shapes_from_config(config: dict) -> list[NodeShape]:
    """Node shapes the autoscaler may launch: each type up to its max_workers (the head once)."""
    shapes = []
    for name, node_type in config["available_node_types"].items():
        resources = node_type.get("resources", {})
        count = node_type.get("max_workers", 0) + (1 if name == config["head_node_type"] else 0)
        shapes.append(NodeShape(name=name, num_cpus=float(resources.get("CPU", 0)), num_gpus=float(resources.get("GPU", 0)), count=count))
    return shapes


def shapes_from_nodes(nodes: list[dict]) -> list[NodeShape]:
    """Shapes of a running cluster's alive nodes ({"node_id", "num_cpus", "num_gpus"} each)."""
    return [NodeShape(name=n["node_id"][:12], num_cpus=n["num_cpus"], num_gpus=n["num_gpus"], count=1) for n in nodes]


def check_scaling_fits(scaling, shapes: list[NodeShape], *, source: str) -> dict:
    """Raise ResourcesError unless `scaling` (a ScalingSpec) fits the shapes; returns the plan.

    Each worker is one placement-group bundle of cpus_per_worker CPUs (+ gpus_per_worker GPUs):
    a bundle must fit on one node, and the nodes together must hold num_workers bundles.
    """
    cpus, gpus = scaling.cpus_per_worker, (scaling.gpus_per_worker if scaling.use_gpu else 0.0)
    usable = [s for s in shapes if s.count > 0]
    if gpus > 0:
        most = max((s.num_gpus for s in usable), default=0.0)
        if most == 0:
            raise ResourcesError(f"scaling.use_gpu is true but {source} has no GPU nodes")
        if gpus > most:
            biggest = max(usable, key=lambda s: s.num_gpus).name
            raise ResourcesError(f"scaling.gpus_per_worker={_num(gpus)}: the largest node of {source} has {_num(most)} GPUs (node type {biggest!r})")
    most_cpus = max((s.num_cpus for s in usable if s.num_gpus >= gpus), default=0.0)
    if cpus > most_cpus:
        raise ResourcesError(f"scaling.cpus_per_worker={_num(cpus)}: the largest {'GPU ' if gpus else ''}node of {source} has {_num(most_cpus)} CPUs")
    slots = 0
    for s in usable:
        per_node = math.floor(s.num_cpus / cpus + 1e-9)
        if gpus > 0:
            per_node = min(per_node, math.floor(s.num_gpus / gpus + 1e-9))
        slots += per_node * s.count
    # An elastic run needs room for its minimum; it grows into what else there is.
    if scaling.min_workers > slots:
        need = f"{_num(cpus)} CPUs" + (f" + {_num(gpus)} GPUs" if gpus else "")
        shown = list(scaling.num_workers) if scaling.elastic else scaling.num_workers
        raise ResourcesError(f"scaling.num_workers={shown}: {source} holds at most {slots} workers of {need} each")
    workers = min(scaling.max_workers, slots)
    return {"num_workers": workers, "worker_slots": slots, "cpus_per_worker": cpus, "gpus_per_worker": gpus}


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def live_nodes(dashboard_url: str) -> list[dict]:
    """Alive nodes of a running cluster through its dashboard (State API; sends the auth token)."""
    from ray.util.state import list_nodes

    nodes = list_nodes(address=dashboard_url, detail=True, raise_on_missing_output=False)
    return [
        {
            "node_id": n.node_id,
            "node_ip": n.node_ip,
            "is_head": bool(n.is_head_node),
            "num_cpus": float(n.resources_total.get("CPU", 0.0)),
            "num_gpus": float(n.resources_total.get("GPU", 0.0)),
        }
        for n in nodes
        if n.state == "ALIVE"
    ]


def wait_for_nodes(dashboard_url: str, *, timeout_s: float = 30.0) -> list[dict]:
    """The live nodes, once the head has registered at least one (its dashboard answers first)."""
    deadline = time.monotonic() + timeout_s
    while True:
        nodes = live_nodes(dashboard_url)
        if nodes or time.monotonic() > deadline:
            return nodes
        time.sleep(0.25)


def describe_nodes(nodes: list[dict]) -> dict:
    return {
        "num_cpus": sum(n["num_cpus"] for n in nodes),
        "num_gpus": sum(n["num_gpus"] for n in nodes),
        "num_nodes": len(nodes),
        "nodes": nodes,
    }
