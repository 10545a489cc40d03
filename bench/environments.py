"""What an endpoint environment costs: its first build, and a second job that reuses it.

    python bench/environments.py [--package scikit-learn] [-n 3]

1. First build of an environment holding PACKAGE, against `python -m venv` + `pip install PACKAGE`, both with
   a warm download cache (each tool's own cache is warmed by one untimed install first). Ours is the real
   thing: a fresh control plane (its own TRAINML_HOME) builds the environment for a job, and the build time
   is the one the environment records (uv venv, the install of the package and of the runtime's own
   requirements, the runtime's copy and its import check). Target: at most 0.3x.
2. A second job with the same packages, create -> running, against a job without packages, on one control
   plane (median of n each). Target: at most 1.5x.

Real processes on loopback only; the same trivial model (bench/model) serves both jobs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from conftest import ControlPlane, kill_everything_under  # noqa: E402  (the tests' real control plane fixture)

ROUTE = {"verb": "POST", "path": "/predict", "file": "predict", "function": "predict",
         "body": [{"name": "text", "type": "str"}, {"name": "n", "type": "int"}]}


def pip_venv_install(package: str, folder: Path) -> float:
    began = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    subprocess.run([str(folder / "bin" / "python"), "-m", "pip", "install", "-q", package], check=True)
    return time.perf_counter() - began


async def create_to_running(plane: ControlPlane, name: str, environment: dict | None) -> float:
    async with plane.client() as client:
        began = time.perf_counter()
        job = await client.jobs.create(name,
                                       model={"source_type": "local", "source_uri": str(ROOT / "bench" / "model")},
                                       endpoint={"routes": [ROUTE]}, environment=environment)
        await job.wait_for("running", timeout=900)
        seconds = time.perf_counter() - began
        await job.remove(force=True)
        return seconds


def build_seconds(plane: ControlPlane) -> float:
    listing = plane.api("GET", "/api/environments").json()
    (record,) = listing["environments"]
    return record["build_seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", default="scikit-learn")
    parser.add_argument("-n", type=int, default=3, help="jobs of each kind for the create -> running medians")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-envs-"))
    os.environ.setdefault("UV_CACHE_DIR", str(work / "uv-cache"))
    environment = {"packages": {"pip": [args.package]}}
    planes = []
    try:
        # Warm both download caches, untimed.
        pip_venv_install(args.package, work / "warm-pip")
        warm = ControlPlane(work / "warm-home").start()
        planes.append(warm)
        asyncio.run(create_to_running(warm, "warm", environment))

        pip_seconds = pip_venv_install(args.package, work / "pip-venv")
        fresh = ControlPlane(work / "home").start()
        planes.append(fresh)
        asyncio.run(create_to_running(fresh, "first", environment))
        ours = build_seconds(fresh)

        plain, reused = [], []
        for i in range(args.n):  # alternate, so machine noise hits both alike
            plain.append(asyncio.run(create_to_running(fresh, f"plain-{i}", None)))
            reused.append(asyncio.run(create_to_running(fresh, f"reused-{i}", environment)))
        plain_median, reused_median = statistics.median(plain), statistics.median(reused)
    finally:
        for plane in planes:
            plane.stop()
            kill_everything_under(plane.home)
        shutil.rmtree(work, ignore_errors=True)

    print(f"first build with {args.package} (warm caches):")
    print(f"  python -m venv + pip install   {pip_seconds:6.2f} s")
    print(f"  trainml environment (uv)       {ours:6.2f} s   {ours / pip_seconds:.2f}x   (target <= 0.3x)")
    print(f"second job, create -> running (median of {args.n}):")
    print(f"  no packages                    {plain_median:6.2f} s")
    print(f"  {args.package} (reused env)".ljust(33)
          + f"{reused_median:6.2f} s   {reused_median / plain_median:.2f}x   (target <= 1.5x)")
    print(json.dumps({"pip_seconds": pip_seconds, "uv_seconds": ours, "build_ratio": ours / pip_seconds,
                      "plain_seconds": plain, "reused_seconds": reused, "reuse_ratio": reused_median / plain_median}))


if __name__ == "__main__":
    main()
