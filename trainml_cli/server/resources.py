"""Resources: which GPUs this machine has, who holds them, and what a job costs.

GPUs are found with `nvidia-smi` when it is installed (limited to the control plane's own
`CUDA_VISIBLE_DEVICES` when that is set), or declared with `--gpus` / `TRAINML_GPUS` ("none", or
"0:rtx3090,1:rtx3090" for machines where nvidia-smi is not available, such as some containers). A job gets its
GPUs exclusively through `CUDA_VISIBLE_DEVICES` (UUIDs when known, so CUDA's device order does not matter); a
job that asks for more GPUs than are free waits (`waiting for resources`) until another job releases them. A
job whose `gpu_types` is `["cpu"]` (the local default) needs no GPU and gets `CUDA_VISIBLE_DEVICES=""`.
CPUs are not reserved: `cpu_count` sets the endpoint's worker count, at most this machine's CPU count
(`check_workers`, asked by the local backend; on Ray `cpu_count` is per replica, placed by Ray).

Price table, in credits per hour (trainML bills endpoints by run time, like its other jobs):

    each CPU (cpu_count)      0.01
    each GPU, by type         rtx2060 0.10, rtx2070 0.12, rtx2080ti 0.25, rtx3090 0.35, rtx4090 0.50,
                              t4 0.20, a4000 0.30, a6000 0.70, v100 0.90, a100 1.50, h100 2.50,
                              any other type 0.50

A job's credits are its run time (while its endpoint is starting or running) times its hourly rate.
`max_price` is the most a job will pay per GPU-hour; a job whose GPU type costs more is refused.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import shutil
import subprocess
from dataclasses import dataclass

from ..errors import UsageError
from ..hints import CPU_ONLY_API
from ..limits import cpu_count


def check_workers(resources: dict, replicas: int | None = None) -> None:
    """Local worker processes (replicas, else cpu_count) fit this machine: more than its CPUs only compete,
    and take long to start and stop."""
    if replicas is not None and replicas > cpu_count():
        raise UsageError.at(("endpoint", "replicas"), f"{replicas} is more than this machine's {cpu_count()} CPUs")
    if replicas is None and resources["cpu_count"] > cpu_count():
        raise UsageError.at(("resources", "cpu_count"),
                            f"{resources['cpu_count']} is more than this machine's {cpu_count()} CPUs")

CPU_RATE = 0.01
GPU_RATES = {
    "rtx2060": 0.10,
    "rtx2070": 0.12,
    "rtx2080ti": 0.25,
    "rtx3090": 0.35,
    "rtx4090": 0.50,
    "t4": 0.20,
    "a4000": 0.30,
    "a6000": 0.70,
    "v100": 0.90,
    "a100": 1.50,
    "h100": 2.50,
}
OTHER_GPU_RATE = 0.50
CPU_TYPE = "cpu"

DEFAULT_RESOURCES = {"gpu_types": [CPU_TYPE], "gpu_count": 1, "cpu_count": 1, "disk_size": 10, "max_price": 10.0}


@dataclass(frozen=True)
class Gpu:
    index: str
    name: str
    uuid: str | None = None

    @property
    def device(self) -> str:
        """What to put in CUDA_VISIBLE_DEVICES for this GPU."""
        return self.uuid or self.index


def _squash(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def gpu_rate(gpu_type: str) -> float:
    return GPU_RATES.get(_squash(gpu_type), OTHER_GPU_RATE)


def matches(gpu: Gpu, gpu_type: str) -> bool:
    """`rtx3090` matches "NVIDIA GeForce RTX 3090"."""
    return _squash(gpu_type) in _squash(gpu.name)


_LABELS = {"gpu_count": "GPU count", "cpu_count": "CPU count", "disk_size": "disk size"}


def normalize(resources: dict | None) -> dict:
    """The job's resources with defaults filled in; raises UsageError naming the bad field."""
    merged = {**DEFAULT_RESOURCES, **{k: v for k, v in (resources or {}).items() if v is not None}}
    types = merged["gpu_types"]
    if isinstance(types, str):
        types = [types]
    if not types or not all(isinstance(t, str) and _squash(t) for t in types):
        raise UsageError.at(("resources", "gpu_types"),
                            f"{merged['gpu_types']!r} must be a list of GPU type names, e.g. [\"cpu\"]")
    # "RTX 3090" is the type rtx3090, as the price table and `trainml gpu list` write it (matching ignores case,
    # spaces and dashes already; the record should read the same).
    merged["gpu_types"] = list(dict.fromkeys(_squash(t) for t in types))
    # Every problem at once (the dashboard shows each beside its field), each saying what the rule is.
    problems = []
    gpus = merged["gpu_count"]  # a fraction is the Ray backend's to give (a share of one GPU); GpuPool refuses it
    if not isinstance(gpus, (int, float)) or isinstance(gpus, bool) or not math.isfinite(gpus) or gpus < 0:
        what = "is too small" if isinstance(gpus, (int, float)) and not isinstance(gpus, bool) else "is not a number"
        problems.append((("resources", "gpu_count"), f"{gpus!r} {what}; GPU count must be a number, 0 or more "
                         "(a fraction such as 0.5 on the Ray backend)"))
    elif isinstance(gpus, float) and gpus.is_integer():
        merged["gpu_count"] = int(gpus)
    for key, low in (("cpu_count", 1), ("disk_size", 1)):
        value = merged[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            what = "is too small" if isinstance(value, int) and not isinstance(value, bool) else "is not a whole number"
            problems.append((("resources", key),
                             f"{value!r} {what}; {_LABELS[key]} must be a whole number, {low} or more"))
    # cpu_count against this machine's CPUs: check_workers, the local backend's (on Ray it is per replica).
    price = merged["max_price"]
    if not isinstance(price, (int, float)) or isinstance(price, bool) or price < 0:
        what = "is too small" if isinstance(price, (int, float)) and not isinstance(price, bool) else "is not a number"
        problems.append((("resources", "max_price"),
                         f"{price!r} {what}; max price must be 0 or more (credits per hour)"))
    if problems:
        raise UsageError.of(problems)
    if all(t == CPU_TYPE for t in merged["gpu_types"]):
        merged["gpu_count"] = 0  # a CPU job holds no GPU; recording the default 1 would say otherwise
    if gpus_needed(merged):
        gpu_types = [t for t in merged["gpu_types"] if t != CPU_TYPE]
        cheapest = min(gpu_types, key=gpu_rate)
        if gpu_rate(cheapest) > merged["max_price"]:
            raise UsageError.at(
                ("resources", "max_price"), f"{merged['max_price']} credits/hour is below the price of {cheapest} "
                f"({gpu_rate(cheapest)} credits/hour per GPU)"
            )
    return merged


def gpus_needed(resources: dict) -> int:
    if all(t == CPU_TYPE for t in resources["gpu_types"]):
        return 0
    return resources["gpu_count"]


def hourly_rate(resources: dict, gpus: list[dict]) -> float:
    rate = resources["cpu_count"] * CPU_RATE
    for gpu in gpus:
        rate += gpu_rate(gpu["type"])
    return round(rate, 6)


def detect_gpus(declared: str | None = None) -> list[Gpu]:
    """The GPUs jobs may use: declared ("none" or "INDEX:NAME,..."), else what nvidia-smi reports."""
    if declared is not None:
        return _parse_declared(declared)
    if not shutil.which("nvidia-smi"):
        return []
    try:
        result = subprocess.run(
            ["nvidia-smi", "--query-gpu=index,name,uuid", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    if result.returncode != 0:
        return []
    gpus = []
    for line in result.stdout.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 3:
            gpus.append(Gpu(parts[0], parts[1], parts[2]))
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        allowed = {v.strip() for v in visible.split(",") if v.strip()}
        gpus = [g for g in gpus if g.index in allowed or g.uuid in allowed]
    return gpus


def _parse_declared(text: str) -> list[Gpu]:
    text = text.strip()
    if text.lower() in ("", "none", "0"):
        return []
    gpus = []
    for item in text.split(","):
        index, sep, name = item.strip().partition(":")
        if not sep or not index or not name:
            raise UsageError(f"--gpus: {item.strip()!r} is not INDEX:TYPE (e.g. 0:rtx3090); use 'none' for no GPUs")
        gpus.append(Gpu(index.strip(), name.strip()))
    return gpus


class GpuPool:
    """Hands out GPUs exclusively; `acquire` waits until enough are free."""

    def __init__(self, gpus: list[Gpu]):
        self.gpus = gpus
        self.holders: dict[str, str] = {}  # gpu index -> job id
        self._freed = asyncio.Condition()

    def check(self, resources: dict) -> None:
        """Refuse a request this machine could never satisfy (rather than wait forever)."""
        need = gpus_needed(resources)
        if not need:
            return
        if not float(need).is_integer():
            raise UsageError.at(("resources", "gpu_count"), f"{need:g} is not a whole number: this machine hands out "
                                "whole GPUs (a fraction of one is for the Ray backend, "
                                "trainml server run --backend ray)")
        types = [t for t in resources["gpu_types"] if t != CPU_TYPE]
        best = max(sum(1 for g in self.gpus if matches(g, t)) for t in types)
        if best < need:
            found = ", ".join(f"{g.index}: {g.name}" for g in self.gpus) or "none"
            raise UsageError.at(
                ("resources",), f"asks for {need} GPU(s) of type {' or '.join(types)} but this machine has {best} "
                f"(GPUs found: {found}; use {CPU_ONLY_API} to run without one)"
            )

    def _choose(self, resources: dict, mine: str | None = None) -> tuple[str, list[Gpu]] | None:
        """The cheapest type with enough GPUs free (or held by `mine`, whose GPUs come first) and which of them."""
        need = gpus_needed(resources)
        types = sorted((t for t in resources["gpu_types"] if t != CPU_TYPE), key=gpu_rate)
        for gpu_type in types:
            free = [g for g in self.gpus if matches(g, gpu_type) and self.holders.get(g.index) in (None, mine)]
            free.sort(key=lambda g: mine is None or self.holders.get(g.index) != mine)
            if len(free) >= need:
                return gpu_type, free[:need]
        return None

    def try_take(self, job_id: str, resources: dict, mine: str | None = None) -> list[dict] | None:
        """GPUs for `job_id` (a job, or a revision being deployed), or None when not enough are free. `mine`: a
        holder whose GPUs count as free too (a revision replacing it once it stops); they stay its until
        `hand_over`."""
        if not gpus_needed(resources):
            return []
        found = self._choose(resources, mine)
        if found is None:
            return None
        gpu_type, chosen = found
        for gpu in chosen:
            if mine is None or self.holders.get(gpu.index) != mine:
                self.holders[gpu.index] = job_id
        return [{"index": g.index, "name": g.name, "type": gpu_type, "device": g.device} for g in chosen]

    def can_take(self, resources: dict, mine: str | None = None) -> bool:
        return not gpus_needed(resources) or self._choose(resources, mine) is not None

    def held_by(self, holder: str) -> list[str]:
        return [index for index, h in self.holders.items() if h == holder]

    async def hand_over(self, job_id: str, gpus: list[dict]) -> None:
        """The job now runs on `gpus` (a new revision's, taken under another holder name or kept from the job's):
        they become the job's, and the job's others are free."""
        keep = {gpu["index"] for gpu in gpus}
        freed = [index for index in self.held_by(job_id) if index not in keep]
        for index in freed:
            del self.holders[index]
        for index in keep:
            self.holders[index] = job_id
        if freed:
            async with self._freed:
                self._freed.notify_all()

    def claim(self, job_id: str, gpus: list[dict]) -> list[dict]:
        """Mark these GPUs as the job's: an adopted endpoint already runs on them."""
        for gpu in gpus:
            self.holders[gpu["index"]] = job_id
        return gpus

    async def acquire(self, job_id: str, resources: dict) -> list[dict]:
        async with self._freed:
            while True:
                taken = self.try_take(job_id, resources)
                if taken is not None:
                    return taken
                await self._freed.wait()

    async def release(self, job_id: str) -> None:
        held = [index for index, holder in self.holders.items() if holder == job_id]
        for index in held:
            del self.holders[index]
        if held:
            async with self._freed:
                self._freed.notify_all()


def gpu_listing(pool: GpuPool) -> list[dict]:
    """[{type, name, price, count, free}]: the price table's types, then any other type this machine has."""
    rows = []
    for gpu_type, price in GPU_RATES.items():
        mine = [g for g in pool.gpus if matches(g, gpu_type)]
        rows.append({"type": gpu_type, "names": sorted({g.name for g in mine}), "price": price, "count": len(mine),
                     "free": sum(1 for g in mine if g.index not in pool.holders)})
    for gpu in pool.gpus:
        if not any(matches(gpu, t) for t in GPU_RATES):
            key = _squash(gpu.name)
            row = next((r for r in rows if r["type"] == key), None)
            if row is None:
                row = {"type": key, "names": [gpu.name], "price": OTHER_GPU_RATE, "count": 0, "free": 0}
                rows.append(row)
            row["count"] += 1
            row["free"] += gpu.index not in pool.holders
    return rows
