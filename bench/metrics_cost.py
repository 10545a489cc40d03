"""What the Prometheus metrics cost: this tree's endpoint against the same endpoint before them, same bench.

    python bench/metrics_cost.py [--baseline af67aa3] [--seconds 8] [--rounds 3]

The baseline commit is exported with `git archive` to a temporary folder and run from there (PYTHONPATH), so both
servers are the runtime as committed; rounds alternate which goes first. Same route, body and settings as
throughput.py (access log on), server on core 0, wrk on core 1. Target (issue 11): the metrics cost at most 10%
of the throughput.

Besides requests/s, it reports the server's CPU time per request (from /proc): on a machine shared with other
work, requests/s swings with whatever else runs on the core, while the CPU a request costs barely moves. On a
core of its own a server's throughput is 1 / (CPU per request), so the CPU ratio is the throughput cost.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

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
        trees = {f"baseline {args.baseline}": baseline, "this tree": str(ROOT)}
        ratios: dict[int, list[float]] = {c: [] for c in connections}
        cpu_ratios: dict[int, list[float]] = {c: [] for c in connections}
        cpu: dict = {}
        for number in range(args.rounds):
            rps = {}
            order = list(trees.items()) if number % 2 == 0 else list(reversed(trees.items()))  # neither always first
            for name, tree in order:
                port = free_port()
                command = [sys.executable, "-m", "trainml_cli.runtime", "--model-dir", str(ROOT / "bench" / "model"),
                           "--port", str(port), "--route", json.dumps(ROUTE)]
                with server(command, port, env={"PYTHONPATH": tree}) as proc:
                    wrk(f"http://127.0.0.1:{port}/predict", BODY, 8, 2)  # warm up
                    for c in connections:
                        before = cpu_seconds(proc.pid)
                        result = wrk(f"http://127.0.0.1:{port}/predict", BODY, c, args.seconds)
                        cpu_us = (cpu_seconds(proc.pid) - before) / result["requests"] * 1e6
                        rps[(name, c)] = result["rps"]
                        cpu[(name, c)] = cpu_us
                        print(f"round {number + 1} {name:18} c={c:<3} {result['rps']:8.0f} req/s "
                              f"p99 {result['p99_ms']:6.2f} ms  {cpu_us:6.1f} us CPU/request", flush=True)
            base = f"baseline {args.baseline}"
            for c in connections:
                ratios[c].append(rps[("this tree", c)] / rps[(base, c)])
                cpu_ratios[c].append(cpu[("this tree", c)] / cpu[(base, c)])
        for c in connections:
            values, costs = ratios[c], cpu_ratios[c]
            print(f"c={c}: requests/s this tree / baseline {min(values):.3f} .. {max(values):.3f}; CPU per request "
                  f"{min(costs):.3f} .. {max(costs):.3f} (median {sorted(costs)[len(costs) // 2]:.3f}) "
                  f"over {len(values)} rounds")


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
