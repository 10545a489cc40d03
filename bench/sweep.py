"""A concurrency sweep: requests/s, p50 and p99 at 1, 8, 64 and 256 connections, for the trivial route and for the
MLP, against the baselines, in one run.

    python bench/sweep.py [--seconds 5] [--rounds 1] [--connections 1,8,64,256] [--only trivial|mlp] [--markdown]

- trivial: POST /predict {"text", "n"} calling bench/model/predict.py (bench/throughput.py's servers): a raw ASGI
  app on the same uvicorn (the ceiling), a hand-written FastAPI app, LitServe (bench/trivial_litserve.py), our
  endpoint with default settings;
- mlp: bench/mlp/predict.py, 256 floats per request (bench/batching.py's servers, BLAS on one thread): our
  batched route (max_size 32) and unbatched route with default settings, LitServe with its batching, FastAPI.

Each server runs on core 0 (with all its processes), wrk on core 1, as in the other bench scripts; the servers of a
workload take turns within a round, and every table line carries the 1-minute load average when it was taken
(the machine may be shared). Ratios are ours over each baseline at the same connections in the same round. Every
server runs with its defaults, so past its queue our endpoint answers 503 at once (64 waiting per worker by
default): those show in the non-2xx column, and req/s counts only the 200s.

A bare Ray Serve deployment is not in the sweep: bench/ray.py measures one against our Ray backend on a cluster.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time

from batching import DRAIN_SECONDS, ONE_THREAD, servers as mlp_servers
from harness import ROOT, free_port, require_wrk, server, wrk
from throughput import BODY as TRIVIAL_BODY, commands as trivial_commands

CONNECTIONS = "1,8,64,256"


def trivial(port: int) -> dict[str, tuple[list[str], str, dict]]:
    chosen = trivial_commands(port)
    return {
        "raw ASGI": (chosen["raw"], "/ping", {}),
        "FastAPI": (chosen["fastapi"], "/ping", {}),
        "LitServe": ([sys.executable, str(ROOT / "bench" / "trivial_litserve.py"), str(port)], "/health", {}),
        "trainml": (chosen["trainml"], "/ping", {}),
    }


def mlp(port: int) -> dict[str, tuple[list[str], str, dict]]:
    chosen = mlp_servers(port)
    names = {"trainml batched": "trainml batched", "trainml unbatched": "trainml unbatched",
             "litserve batched": "LitServe batched", "fastapi": "FastAPI"}
    return {shown: (*chosen[name], ONE_THREAD) for name, shown in names.items()}


WORKLOADS = {"trivial": (trivial, lambda: TRIVIAL_BODY, "trainml"),
             "mlp": (mlp, lambda: json.dumps({"x": [round(random.Random(0).uniform(-1, 1), 3) for _ in range(256)]}),
                     "trainml batched")}


def run_workload(name: str, connections: list[int], seconds: int) -> dict[tuple[str, int], dict]:
    make, body, _ = WORKLOADS[name]
    body = body()
    port = free_port()
    results = {}
    for shown, (command, ready, env) in make(port).items():
        with server(command, port, ready_path=ready, env=env):
            url = f"http://127.0.0.1:{port}/predict"
            wrk(url, body, 8, 2)  # warm up (and prove our function short)
            time.sleep(DRAIN_SECONDS if name == "mlp" else 0)
            for c in connections:
                result = wrk(url, body, c, seconds)
                result["load"] = os.getloadavg()[0]
                results[(shown, c)] = result
                if name == "mlp":
                    time.sleep(DRAIN_SECONDS)  # queued calls of closed connections finish before the next load
    return results


def print_table(name: str, results: dict, markdown: bool) -> None:
    if markdown:
        print(f"\n{name}:\n\n| server | connections | req/s | p50 ms | p99 ms | non-2xx | load average |")
        print("|---|---|---|---|---|---|---|")
        for (shown, c), r in results.items():
            print(f"| {shown} | {c} | {r['ok_rps']:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                  f"{r['non2xx'] + r['socket_errors']:,} | {r['load']:.1f} |")
        return
    print(f"\n{name}:\n{'server':18} {'conns':>5} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8} {'load':>5}")
    for (shown, c), r in results.items():
        print(f"{shown:18} {c:5d} {r['ok_rps']:9.0f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} "
              f"{r['non2xx'] + r['socket_errors']:8d} {r['load']:5.1f}")


def ratios(name: str, results: dict, connections: list[int]) -> dict[tuple[str, int], float]:
    ours = WORKLOADS[name][2]
    found = {}
    for shown, c in results:
        if shown != ours:
            found[(shown, c)] = results[(ours, c)]["ok_rps"] / results[(shown, c)]["ok_rps"]
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--connections", default=CONNECTIONS)
    parser.add_argument("--only", help="trivial or mlp")
    parser.add_argument("--markdown", action="store_true", help="tables as Markdown")
    args = parser.parse_args()
    require_wrk()
    connections = [int(c) for c in args.connections.split(",")]
    chosen = [args.only] if args.only else list(WORKLOADS)
    every: dict[tuple[str, str, int], list[float]] = {}
    for number in range(args.rounds):
        for name in chosen:
            results = run_workload(name, connections, args.seconds)
            print_table(f"{name}, round {number + 1}", results, args.markdown)
            found = ratios(name, results, connections)
            for (shown, c), ratio in found.items():
                every.setdefault((name, shown, c), []).append(ratio)
            ours = WORKLOADS[name][2]
            for c in connections:
                print(f"{name} c={c}: {ours} " + ", ".join(f"{found[(s, k)]:.2f}x {s}" for s, k in found if k == c))
            sys.stdout.flush()
    if args.rounds > 1:
        for (name, shown, c), values in every.items():
            print(f"median over {len(values)} rounds, {name} c={c}: {statistics.median(values):.2f}x {shown} "
                  f"({', '.join(f'{v:.2f}' for v in values)})")


if __name__ == "__main__":
    main()
