"""Is a run's storage path one that every node of the cluster sees?

Ray Train writes checkpoints from each worker's node and the driver reads them back from its
own; the registry is read by Serve replicas wherever they land. On one node any folder works;
on several, a folder only the head has (a relative path resolved in a job's working dir, /tmp,
a local disk) loses checkpoints silently or fails at the first restore on another node. So a
multi-node run first refuses a relative path, then writes a marker file and asks one task on
every alive node to read it back, and names the nodes that cannot.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from biomed.log import get_logger

log = get_logger(__name__)

# Seconds to wait for every node's probe task; a zero-CPU task runs even on a full node.
PROBE_TIMEOUT_S = 60.0


class StorageNotShared(ValueError):
    """The storage path is not usable by every node of a multi-node cluster."""


def _sees_marker(path: str, token: str) -> bool:
    marker = Path(path)
    return marker.is_file() and marker.read_text() == token


def alive_node_ids() -> list[str]:
    """Ids of the alive nodes of the cluster this process has joined."""
    import ray

    return [n["NodeID"] for n in ray.nodes() if n.get("Alive")]


def check_storage_shared(storage_path: str, *, given: str | None = None, timeout_s: float = PROBE_TIMEOUT_S) -> int:
    """Refuse `storage_path` unless every alive node sees it; returns the nodes checked.

    `given` is the path as the user wrote it (before it was made absolute): a relative one is
    refused on a multi-node cluster without probing, because it names a different folder on
    every machine. Single-node clusters pass without a probe.
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = alive_node_ids()
    if len(nodes) < 2 or "://" in storage_path:  # an object store is reached from every node alike
        return len(nodes)
    if given is not None and not Path(given).expanduser().is_absolute():
        raise StorageNotShared(
            f"storage_path {given!r} is relative, and this cluster has {len(nodes)} nodes: give an absolute path on a "
            "filesystem every node mounts (NFS, a shared volume), the same on each"
        )
    root = Path(storage_path)
    root.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    marker = root / f".biomed-shared-check-{token}"
    marker.write_text(token)
    probe = ray.remote(num_cpus=0, max_retries=0)(_sees_marker)
    try:
        refs = {node: probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote(str(marker), token) for node in nodes}
        seen = dict(zip(refs, ray.get(list(refs.values()), timeout=timeout_s)))
    finally:
        marker.unlink(missing_ok=True)
    blind = sorted(node for node, ok in seen.items() if not ok)
    if blind:
        raise StorageNotShared(
            f"storage_path {storage_path!r} is not visible from {len(blind)} of {len(nodes)} nodes ({', '.join(n[:12] for n in blind)}): "
            "it is node-local there. Give a folder on a filesystem every node mounts at the same path"
        )
    log.debug("storage %s is visible from all %d nodes", storage_path, len(nodes))
    return len(nodes)
