"""What the Prometheus metrics cost: this tree's endpoint against the same endpoint before them, side by side.

    python bench/metrics_cost.py [--baseline af67aa3] [--seconds 8] [--rounds 3]

The baseline commit is exported with `git archive` to a temporary folder and run from there (PYTHONPATH), so both
servers are the runtime as committed. Same route, body and settings as throughput.py (access log on).

Both servers run at the same time on core 0, each loaded by its own wrk on core 1. The kernel gives two busy
processes on one core equal CPU time, so each one's requests/s is its share divided by its CPU cost per request:
the ratio of their requests/s is the ratio of their costs, and whatever else loads the machine loads both alike.
(Run one after the other, on a machine shared with other work, the same two servers swing by 30% either way.)
The server's CPU time per request (from /proc) is reported too. Target (issue 11): the metrics cost at most 10%.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from functools import partial

from harness import ROOT, free_port, require_wrk, server, wrk
from throughput import BODY, ROUTE

BEFORE_METRICS = "af67aa3"  # the last commit before the runtime counted in prometheus_client


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline", default=BEFORE_METRICS)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", default="8,64")
    args = parser.parse_args()
    require_wrk()
    connections = [int(c) for c in args.connections.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-baseline-") as baseline:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.baseline], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", baseline], input=archive.stdout, check=True)
        trees = {"baseline": baseline, "this tree": str(ROOT)}
        ratios = {c: [] for c in connections}
        cpu_ratios = {c: [] for c in connections}
        for number in range(args.rounds):
            with ExitStack() as stack, ThreadPoolExecutor(2) as pool:
                urls, pids = {}, {}
                for name, tree in trees.items():
                    port = free_port()
                    command = [sys.executable, "-m", "trainml_cli.runtime", "--model-dir",
                               str(ROOT / "bench" / "model"),
                               "--port", str(port), "--route", json.dumps(ROUTE)]
                    pids[name] = stack.enter_context(server(command, port, env={"PYTHONPATH": tree})).pid
                    urls[name] = f"http://127.0.0.1:{port}/predict"
                targets = [urls[name] for name in trees]
                list(pool.map(partial(wrk, body=BODY, connections=8, seconds=2, threads=1), targets))  # warm up
                for c in connections:
                    before = {name: cpu_seconds(pids[name]) for name in trees}
                    load = partial(wrk, body=BODY, connections=c, seconds=args.seconds, threads=1)
                    results = dict(zip(trees, pool.map(load, targets)))
                    cpu = {name: (cpu_seconds(pids[name]) - before[name]) / results[name]["requests"] * 1e6
                           for name in trees}
                    for name in trees:
                        print(f"round {number + 1} c={c:<3} {name:10} {results[name]['rps']:8.0f} req/s "
                              f"{cpu[name]:6.1f} us CPU/request", flush=True)
                    ratios[c].append(results["this tree"]["rps"] / results["baseline"]["rps"])
                    cpu_ratios[c].append(cpu["this tree"] / cpu["baseline"])
        for c in connections:
            values, costs = sorted(ratios[c]), sorted(cpu_ratios[c])
            print(f"c={c}: requests/s this tree / baseline {values[0]:.3f} .. {values[-1]:.3f} "
                  f"(median {values[len(values) // 2]:.3f}); CPU per request {costs[0]:.3f} .. {costs[-1]:.3f} "
                  f"(median {costs[len(costs) // 2]:.3f}), {len(values)} rounds, baseline {args.baseline}")


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
