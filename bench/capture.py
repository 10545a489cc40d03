"""What request capture costs: the same endpoint with capture off, at 0.1 and at 1.0, side by side.

    python bench/capture.py [--seconds 8] [--rounds 3] [--connections 64]

The three servers run at the same time on core 0, each loaded by its own wrk on core 1 (as metrics_cost.py does):
the kernel gives busy processes on one core equal CPU time, so each one's requests/s is its share divided by its
CPU cost per request, and the ratios against "off" are ratios of costs, whatever else loads the machine. Same
route, body and settings as throughput.py (access log on). Targets (issue 25): 1.0 costs at most 10% of the
throughput, 0.1 at most 2%.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from functools import partial

from harness import ROOT, free_port, require_wrk, server, wrk
from metrics_cost import cpu_seconds
from throughput import BODY, ROUTE

RATES = {"off": None, "0.1": "0.1", "1.0": "1"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    require_wrk()
    c = args.connections
    ratios = {name: [] for name in RATES if name != "off"}
    with tempfile.TemporaryDirectory(prefix="bench-capture-") as folder:
        for number in range(args.rounds):
            with ExitStack() as stack, ThreadPoolExecutor(len(RATES)) as pool:
                urls, pids = {}, {}
                for name, rate in RATES.items():
                    port = free_port()
                    command = [sys.executable, "-m", "trainml_cli.runtime", "--model-dir",
                               str(ROOT / "bench" / "model"), "--port", str(port), "--route", json.dumps(ROUTE)]
                    if rate:
                        command += ["--capture", rate, "--capture-dir", os.path.join(folder, f"{number}-{name}")]
                    pids[name] = stack.enter_context(server(command, port, env={"PYTHONPATH": str(ROOT)})).pid
                    urls[name] = f"http://127.0.0.1:{port}/predict"
                targets = [urls[name] for name in RATES]
                list(pool.map(partial(wrk, body=BODY, connections=8, seconds=2, threads=1), targets))  # warm up
                before = {name: cpu_seconds(pids[name]) for name in RATES}
                load = partial(wrk, body=BODY, connections=c, seconds=args.seconds, threads=1)
                results = dict(zip(RATES, pool.map(load, targets)))
                for name in RATES:
                    cpu = (cpu_seconds(pids[name]) - before[name]) / results[name]["requests"] * 1e6
                    print(f"round {number + 1} c={c} capture {name:4} {results[name]['rps']:8.0f} req/s "
                          f"{cpu:6.1f} us CPU/request", flush=True)
                for name in ratios:
                    ratios[name].append(results[name]["rps"] / results["off"]["rps"])
    for name, values in ratios.items():
        values.sort()
        print(f"c={c}: capture {name} / off: requests/s {values[0]:.3f} .. {values[-1]:.3f} "
              f"(median {values[len(values) // 2]:.3f}), {len(values)} rounds")


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
