"""What the Prometheus metrics cost: this tree's endpoint against the same endpoint before them, same bench.

    python bench/metrics_cost.py [--baseline af67aa3] [--seconds 8] [--rounds 3]

The baseline commit is exported with `git archive` to a temporary folder and run from there (PYTHONPATH), so both
servers are the runtime as committed; rounds alternate between them to spread the machine's noise. Same route,
body and settings as throughput.py (access log on), server on core 0, wrk on core 1. Target (issue 11): the
metrics cost at most 10% of the throughput.
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
        for number in range(args.rounds):
            rps = {}
            order = list(trees.items()) if number % 2 == 0 else list(reversed(trees.items()))  # neither always first
            for name, tree in order:
                port = free_port()
                command = [sys.executable, "-m", "trainml_cli.runtime", "--model-dir", str(ROOT / "bench" / "model"),
                           "--port", str(port), "--route", json.dumps(ROUTE)]
                with server(command, port, env={"PYTHONPATH": tree}):
                    wrk(f"http://127.0.0.1:{port}/predict", BODY, 8, 2)  # warm up
                    for c in connections:
                        result = wrk(f"http://127.0.0.1:{port}/predict", BODY, c, args.seconds)
                        rps[(name, c)] = result["rps"]
                        print(f"round {number + 1} {name:18} c={c:<3} {result['rps']:8.0f} req/s "
                              f"p99 {result['p99_ms']:.2f} ms", flush=True)
            for c in connections:
                ratios[c].append(rps[("this tree", c)] / rps[(f"baseline {args.baseline}", c)])
        for c, values in ratios.items():
            print(f"c={c}: this tree / baseline = {min(values):.3f} .. {max(values):.3f} over {len(values)} rounds "
                  f"(cost {100 * (1 - max(values)):+.1f}% .. {100 * (1 - min(values)):+.1f}%)")


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
