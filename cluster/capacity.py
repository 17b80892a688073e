"""Free-resource checks before work is placed on a running cluster.

Ray Train waits for its workers' placement group without a word of why (measured: beside a Serve
replica holding 1 of 2 CPUs, a 2-worker job printed a start-up timeout's stack trace every 60 s
and never started). So before `fit()`, a search or a deployment, the demand is compared with what
the alive nodes have free:

- it fits now: go on;
- on a cluster of fixed size, it cannot fit even once every other job has finished (the rest is
  held by Serve replicas, which stay until shut down, or the cluster is too small): ResourcesError
  at once, naming the demand, what is free, the total and what holds the rest, with the fixes;
- with an autoscaler: refused at once when its node types (autoscaler v2 publishes them) cannot
  hold it either; else the autoscaler is asked for the bundles (nothing is pending before fit(),
  so it would not scale on its own);
- otherwise (other runs hold it and will finish, or nodes may join): wait, with one progress line
  every `progress_s` saying what it waits for.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass

from biomed.log import get_logger
from cluster import ray_compat
from cluster.resources import ResourcesError

log = get_logger(__name__)


@dataclass(frozen=True)
class Demand:
    """`bundles` placements of `cpus` CPUs and `gpus` GPUs each, each on one node. `what` names
    who asks ("2 Train workers (scaling.num_workers)"); `fewer` is the spec change asking for
    fewer bundles, with `{n}` for the number that would fit (e.g. "scaling.num_workers: {n}")."""

    what: str
    bundles: int
    cpus: float
    gpus: float = 0.0
    fewer: str | None = None


def slots(nodes: list[dict[str, float]], demand: Demand) -> int:
    """How many of the demand's bundles the nodes' resources hold, each bundle on one node."""
    count = 0
    for node in nodes:
        fit = math.floor(node.get("CPU", 0.0) / demand.cpus + 1e-9) if demand.cpus > 0 else demand.bundles
        if demand.gpus > 0:
            fit = min(fit, math.floor(node.get("GPU", 0.0) / demand.gpus + 1e-9))
        count += fit
    return count


def serve_holdings(*, except_app: str | None = None) -> dict[str, dict[str, float]]:
    """Per node, the CPUs and GPUs that alive Serve replicas hold, leaving out those of
    `except_app` (a deployment replaces its own); empty without the State API."""
    from ray.util.state import list_actors

    try:
        actors = list_actors(filters=[("state", "=", "ALIVE")], detail=True, limit=10_000, raise_on_missing_output=False)
    except Exception as error:  # no dashboard (State API) on this cluster: holders unknown
        log.debug("cannot list actors: %s", error)
        return {}
    held: dict[str, dict[str, float]] = {}
    prefix, skipped = ray_compat.SERVE_REPLICA_CLASS_PREFIX, f"{ray_compat.SERVE_REPLICA_CLASS_PREFIX}{except_app}:"
    for actor in actors:
        if actor.class_name.startswith(prefix) and not (except_app and actor.class_name.startswith(skipped)) and actor.node_id:
            node = held.setdefault(actor.node_id, {"CPU": 0.0, "GPU": 0.0, "replicas": 0})
            for key in ("CPU", "GPU"):
                node[key] += float((actor.required_resources or {}).get(key, 0.0))
            node["replicas"] += 1
    return held


def _reclaimed(per_node: dict, app: str | None) -> dict:
    """`per_node` with what the replicas of `app` hold counted as free: its deployment replaces them."""
    if app is None:
        return per_node
    every, others = serve_holdings(), serve_holdings(except_app=app)
    out = {}
    for node, v in per_node.items():
        mine = {k: every.get(node, {}).get(k, 0.0) - others.get(node, {}).get(k, 0.0) for k in ("CPU", "GPU")}
        out[node] = {"total": v["total"], "free": {**v["free"], **{k: v["free"].get(k, 0.0) + mine[k] for k in mine}}}
    return out


def _sum(nodes, key: str) -> float:
    return sum(n.get(key, 0.0) for n in nodes)


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _need(demand: Demand) -> str:
    each = f"{_num(demand.cpus)} CPU" + (f" + {_num(demand.gpus)} GPU" if demand.gpus else "")
    return f"{demand.what} need {demand.bundles} x ({each})"


def _refusal(demand: Demand, per_node: dict, serve: dict) -> str:
    totals, free = [v["total"] for v in per_node.values()], [v["free"] for v in per_node.values()]
    key = "GPU" if demand.gpus else "CPU"
    parts = [f"{_need(demand)}: {_num(_sum(free, key))} of {_num(_sum(totals, key))} {key}s are free on {len(per_node)} node(s)"]
    held_by_serve = _sum(serve.values(), key)
    others = _sum(totals, key) - _sum(free, key) - held_by_serve
    if held_by_serve:
        replicas = int(sum(n["replicas"] for n in serve.values()))
        parts.append(f"{replicas} Serve replica(s) hold {_num(held_by_serve)} (stop them with `biomed serve shutdown`)")
    if others > 1e-9:
        parts.append(f"other jobs hold {_num(others)}")
    without_serve = [{k: v["total"].get(k, 0.0) - serve.get(node, {}).get(k, 0.0) for k in ("CPU", "GPU")} for node, v in per_node.items()]
    fits = slots(without_serve, demand)
    if demand.fewer and fits >= 1:
        parts.append(f"or ask for fewer: {demand.fewer.format(n=fits)} fits")
    elif not held_by_serve:
        parts.append(f"the cluster holds at most {slots(totals, demand)} in all")
    return "; ".join(parts)


def _node_group_slots(groups: list[dict], demand: Demand) -> float:
    """Bundles the autoscaler's node groups could add at most (inf: a group without a limit)."""
    total = 0.0
    for group in groups:
        each = slots([group["resources"]], demand)
        if each and group["max_count"] < 0:
            return math.inf
        total += each * max(group["max_count"], 0)
    return total


def _check_node_groups(demand: Demand, autoscaler: dict | None, without_serve: list[dict]) -> None:
    groups = (autoscaler or {}).get("node_groups")
    if groups is None:
        return
    most = slots(without_serve, demand) + _node_group_slots(groups, demand)
    if most < demand.bundles:
        kinds = ", ".join(f"{g['name']}: up to {g['max_count']} x {_num(g['resources'].get('CPU', 0))} CPU" + (f" + {_num(g['resources']['GPU'])} GPU" if g["resources"].get("GPU") else "") for g in groups)
        raise ResourcesError(f"{_need(demand)}, more than this cluster and its autoscaler's node types ({kinds}) can hold: {int(most)}")


@contextlib.contextmanager
def _asking_autoscaler(demand: Demand, autoscaler: dict | None):
    # Nothing is pending while this waits before fit(), so an autoscaler would never add the
    # nodes: ask it for the bundles (Ray's request_resources), and withdraw once placed or given up.
    if autoscaler is None:
        yield
        return
    from ray.autoscaler.sdk import request_resources

    bundle = {k: v for k, v in (("CPU", demand.cpus), ("GPU", demand.gpus)) if v}
    request_resources(bundles=[bundle] * demand.bundles)
    try:
        yield
    finally:
        request_resources(bundles=[])


def wait_for_capacity(demand: Demand, *, fixed_size: bool, replacing_app: str | None = None, progress_s: float = 30.0, poll_s: float = 0.5) -> float:
    """Return once the alive nodes have the demand free (seconds waited). On a `fixed_size`
    cluster, raise ResourcesError at once when it cannot fit even after every job but the Serve
    replicas has finished; with an autoscaler, when its node types (where it publishes them)
    cannot hold it either, and else ask it for the nodes. Otherwise wait, logging what it waits
    for every `progress_s`. `replacing_app`: a Serve app being redeployed, whose replicas'
    resources count as free."""
    autoscaler = None if fixed_size else ray_compat.autoscaler_info()
    with _asking_autoscaler(demand, autoscaler if autoscaler and not _fits_now(demand, replacing_app) else None):
        return _wait(demand, fixed_size=fixed_size, autoscaler=autoscaler, replacing_app=replacing_app, progress_s=progress_s, poll_s=poll_s)


def _fits_now(demand: Demand, replacing_app: str | None) -> bool:
    per_node = _reclaimed(ray_compat.resources_per_node(), replacing_app)
    return slots([v["free"] for v in per_node.values()], demand) >= demand.bundles


def _wait(demand: Demand, *, fixed_size: bool, autoscaler: dict | None, replacing_app: str | None, progress_s: float, poll_s: float) -> float:
    started = last_line = time.monotonic()
    while True:
        per_node = ray_compat.resources_per_node()
        if slots([v["free"] for v in per_node.values()], demand) >= demand.bundles:
            return time.monotonic() - started
        per_node = _reclaimed(per_node, replacing_app)
        if slots([v["free"] for v in per_node.values()], demand) >= demand.bundles:
            return time.monotonic() - started
        serve = serve_holdings(except_app=replacing_app)
        without_serve = [{k: v["total"].get(k, 0.0) - serve.get(node, {}).get(k, 0.0) for k in ("CPU", "GPU")} for node, v in per_node.items()]
        if fixed_size and slots(without_serve, demand) < demand.bundles:
            raise ResourcesError(_refusal(demand, per_node, serve))
        _check_node_groups(demand, autoscaler, without_serve)
        if time.monotonic() - last_line >= progress_s:
            last_line = time.monotonic()
            why = "other jobs to finish or the autoscaler to add nodes" if autoscaler else "other jobs to finish or nodes to join"
            log.info("waiting %.0f s for %s: %s", last_line - started, why, _refusal(demand, per_node, serve))
        time.sleep(poll_s)
