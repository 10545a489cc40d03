"""The Ray cluster's nodes as data: what each holds (GPUs and their accelerator type, memory), and what a job's
GPUs need of them.

Read from the head (rayhead.RayHead.cluster: each live node's host and totals from `/nodes?view=summary`, what
is in use on each from `/api/cluster_status`), then worked on by pure functions, unit-tested against a fake
head and used unchanged against a real one:

- `check_gpus`: the Ray accelerator type a job's replicas ask for (`accelerator_type` in ray_actor_options), or
  a UsageError when the cluster could never hold them, naming the GPUs it has. A replica is placed on one node,
  so a node holds `floor(its GPUs / GPUs per replica)` replicas (0.5 GPU each: two per GPU).
- `gpu_listing`: `GET /api/gpus` on the Ray backend, in the local backend's shape, from the cluster's GPUs.
- `totals`: the cluster's CPUs, GPUs and memory for `server status`, with the memory of nodes on one machine
  counted once (`memory`: each of them reports the whole machine's).
- `python_version`: the cluster's Python, from the `python_info` line a node's metrics export carries.

Our GPU types map to Ray's accelerator names (`ray.util.accelerators` where it has a constant: T4, V100, A100,
H100; otherwise the name Ray's NVIDIA detection gives the card, e.g. "NVIDIA GeForce RTX 3090" ->
GeForce-RTX-3090). Any other type matches a node's accelerator name that contains it, as `rtx3090` matches
"NVIDIA GeForce RTX 3090" on the local backend.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ...errors import UsageError
from ...hints import CPU_ONLY_API
from .. import resources as res

ACCELERATOR_PREFIX = "accelerator_type:"  # a node's resource naming its GPUs' type (Ray sets it from the card)
RAY_ACCELERATORS = {
    "t4": "T4", "v100": "V100", "a100": "A100", "h100": "H100",  # ray.util.accelerators' constants
    "rtx2060": "GeForce-RTX-2060", "rtx2070": "GeForce-RTX-2070", "rtx2080ti": "GeForce-RTX-2080-Ti",
    "rtx3090": "GeForce-RTX-3090", "rtx4090": "GeForce-RTX-4090", "a4000": "RTX-A4000", "a6000": "RTX-A6000",
}
UNTYPED = "gpu"  # the listing's row for GPUs a node declares without a type (`ray start --num-gpus N`)
_PYTHON_INFO = re.compile(r'^python_info\{[^}]*version="([^"]+)"', re.MULTILINE)


@dataclass(frozen=True)
class Node:
    node_id: str
    host: str  # hostname and address: nodes started on one machine share it
    total: dict
    used: dict

    @property
    def gpus(self) -> float:
        return self.total.get("GPU", 0.0)

    @property
    def free_gpus(self) -> float:
        return max(0.0, self.gpus - self.used.get("GPU", 0.0))

    @property
    def accelerator(self) -> str | None:
        return next((k[len(ACCELERATOR_PREFIX):] for k in self.total if k.startswith(ACCELERATOR_PREFIX)), None)


def nodes(summary: list, usage_by_node: dict) -> list[Node]:
    """Each live node, from the head's node summary and its per-node usage report."""
    found = []
    for node in summary or []:
        raylet = node.get("raylet") or {}
        if raylet.get("state") != "ALIVE":
            continue
        node_id = raylet.get("nodeId") or ""
        usage = usage_by_node.get(node_id) or {}
        total = dict(raylet.get("resourcesTotal") or {}) or {k: v[1] for k, v in usage.items()}
        found.append(Node(node_id, f"{node.get('hostname', '')}/{node.get('ip') or raylet.get('nodeManagerAddress')}",
                          total, {k: v[0] for k, v in usage.items()}))
    return found


def ray_name(gpu_type: str, labels) -> str | None:
    """The cluster's accelerator name for one of our GPU types, among `labels` (the names its nodes carry)."""
    squashed = res._squash(gpu_type)
    exact = RAY_ACCELERATORS.get(squashed)
    if exact in labels:
        return exact
    return next((label for label in sorted(labels) if squashed and squashed in res._squash(label)), None)


def _holds(nodes_: list[Node], each: float) -> int:
    """How many replicas of `each` GPUs these nodes hold (a replica never spans nodes)."""
    return sum(math.floor(node.gpus / each + 1e-9) for node in nodes_)


def check_gpus(cluster: list[Node], resources: dict, replicas: int) -> str | None:
    """The accelerator type to ask Ray for (the cheapest of the job's types the cluster holds enough of), None
    for a job without GPUs; raises UsageError naming the cluster's GPUs when it could never hold them."""
    each = res.gpus_needed(resources)
    if not each:
        return None
    types = sorted((t for t in resources["gpu_types"] if t != res.CPU_TYPE), key=res.gpu_rate)
    labels = {node.accelerator for node in cluster if node.accelerator and node.gpus}
    for gpu_type in types:
        label = ray_name(gpu_type, labels)
        if label and _holds([n for n in cluster if n.accelerator == label], each) >= replicas:
            return label
    raise UsageError.at(("resources", "gpu_count"),
                        f"{replicas} replica(s) of {each:g} GPU(s) of type {' or '.join(types)} do not fit the Ray "
                        f"cluster: it has {describe_gpus(cluster)} (a replica's GPUs are on one node; use "
                        f"{CPU_ONLY_API} to run without one)")


def describe_gpus(cluster: list[Node]) -> str:
    """'0 GPUs', or '3 GPUs: 2 A100 on host-a, 1 T4 on host-b'."""
    with_gpus = [n for n in cluster if n.gpus]
    total = sum(n.gpus for n in with_gpus)
    if not with_gpus:
        return "0 GPUs"
    each = ", ".join(f"{n.gpus:g} {n.accelerator or 'of no type'} on {n.host.split('/')[-1]}" for n in with_gpus)
    return f"{total:g} GPU{'' if total == 1 else 's'}: {each}"


def gpu_listing(cluster: list[Node]) -> list[dict]:
    """[{type, names, price, count, free, where}] for the cluster's GPUs: the price table's types, then each
    accelerator name no type of ours matches, then GPUs without a type."""
    labels = {node.accelerator for node in cluster if node.accelerator and node.gpus}
    rows, matched = [], set()
    for gpu_type, price in res.GPU_RATES.items():
        label = ray_name(gpu_type, labels)
        mine = [n for n in cluster if label and n.accelerator == label]
        matched.add(label)
        rows.append(_row(gpu_type, price, mine))
    for label in sorted(labels - matched):
        rows.append(_row(res._squash(label), res.OTHER_GPU_RATE, [n for n in cluster if n.accelerator == label]))
    untyped = [n for n in cluster if n.gpus and not n.accelerator]
    if untyped:
        rows.append(_row(UNTYPED, res.OTHER_GPU_RATE, untyped))
    return rows


def _row(gpu_type: str, price: float, mine: list[Node]) -> dict:
    return {"type": gpu_type, "names": sorted({n.accelerator for n in mine if n.accelerator}), "price": price,
            "count": _number(sum(n.gpus for n in mine)), "free": _number(sum(n.free_gpus for n in mine)),
            "where": "the Ray cluster"}


def _number(value: float):
    return int(value) if float(value).is_integer() else round(value, 3)


def totals(cluster: list[Node]) -> dict:
    """{CPU, GPU, memory, objectStoreMemory: {used, total}} over the live nodes (a resource no node has is left
    out), memory counted once per machine."""
    found = {}
    for key in ("CPU", "GPU", "objectStoreMemory"):
        if any(key in node.total for node in cluster):
            found[key] = {"used": sum(n.used.get(key, 0.0) for n in cluster),
                          "total": sum(n.total.get(key, 0.0) for n in cluster)}
    used, total = memory(cluster)
    if total:
        found["memory"] = {"used": used, "total": total}
    return found


def memory(cluster: list[Node]) -> list[float]:
    """[used, total] bytes of Ray's `memory` resource, counting each machine once: nodes started on one machine
    each report that machine's memory, so its total is the largest of theirs and its use their sum (capped)."""
    hosts: dict[str, list[float]] = {}
    for node in cluster:
        used, total = hosts.setdefault(node.host, [0.0, 0.0])
        hosts[node.host] = [used + node.used.get("memory", 0.0), max(total, node.total.get("memory", 0.0))]
    return [sum(min(u, t) for u, t in hosts.values()), sum(t for _, t in hosts.values())]


async def head_python(summary: list) -> str | None:
    """The cluster's Python version, read from the head node's metrics export; None when it does not say."""
    import asyncio

    from .raymetrics import scrape

    head = next((n.get("raylet") or {} for n in summary if (n.get("raylet") or {}).get("isHeadNode")), {})
    if not head.get("metricsExportPort"):
        return None
    text = await asyncio.to_thread(scrape, head.get("nodeManagerAddress"), int(head["metricsExportPort"]))
    return python_version(text or "")


def python_version(metrics_text: str) -> str | None:
    """The Python a node's Ray processes run ("3.11.7"), from its metrics export's `python_info` line."""
    found = _PYTHON_INFO.search(metrics_text or "")
    return found.group(1) if found else None


def shortfall(usage: dict, options: dict) -> str | None:
    """Why the cluster's free resources (`usage`: the head's {resource: [used, total]}) cannot hold a deployment
    with these Serve `options` (rayapps.deployment_options); None if they could."""
    count = options.get("num_replicas") or options["autoscaling_config"]["min_replicas"]
    for key, resource in (("num_cpus", "CPU"), ("num_gpus", "GPU")):
        each = options["ray_actor_options"][key]
        if not each:
            continue
        used, total = usage.get(resource, [0.0, 0.0])
        free = total - used
        if each * count > free:
            return (f"insufficient resources: {count} replica(s) of {each:g} {resource}(s) asked, the cluster has "
                    f"{free:g} {resource}(s) free of {total:g}")
    return None
