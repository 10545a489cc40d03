"""Throughput and latency: our endpoint against a raw ASGI app and a hand-written FastAPI + pydantic app, same
function.

    python bench/throughput.py [--seconds 10] [--rounds 3] [--connections 8,64] [--only raw,trainml] [--together]

Each server runs on core 0 with default settings (our access log on, written to a file), wrk on core 1. The
servers take turns within a round (raw, fastapi, trainml, then again), so a machine shared with other work
loads them alike; with several rounds the summary gives each ratio's median. The raw app (bench/raw_app.py)
is the same uvicorn and uvloop with nothing on top: no framework, no validation, no thread, no log.
Targets (issue 22): at least 0.85x the raw app at 64 connections, at least 3.5x FastAPI at 8.

With --together, each baseline runs at the same time as our endpoint, both on core 0, each loaded by its own wrk
on core 1 (as bench/metrics_cost.py does): the kernel gives two busy processes on one core equal CPU time, so
the ratio of their requests/s is the ratio of their CPU costs per request, and whatever else loads the machine
loads both alike (taken one after the other on a shared machine, the same server swings by 50%).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

from harness import ROOT, free_port, require_wrk, server, wrk

ROUTE = {
    "verb": "POST",
    "path": "/predict",
    "file": "predict",
    "function": "predict",
    "positional": True,
    "body": [{"name": "text", "type": "str"}, {"name": "n", "type": "int"}],
}
BODY = '{"text": "hello world", "n": 3}'


def commands(port: int) -> dict[str, list[str]]:
    uvicorn = [sys.executable, "-m", "uvicorn", "--port", str(port), "--log-level", "warning", "--no-access-log"]
    return {
        "raw": uvicorn + ["bench.raw_app:app"],
        "fastapi": uvicorn + ["bench.fastapi_app:app"],
        "trainml": [sys.executable, "-m", "trainml_cli.runtime", "--model-dir", str(ROOT / "bench" / "model"),
                    "--port", str(port), "--route", json.dumps(ROUTE)],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--connections", default="8,64")
    parser.add_argument("--only", help="comma-separated servers among raw, fastapi, trainml")
    parser.add_argument("--together", action="store_true", help="each baseline at the same time as ours")
    args = parser.parse_args()
    require_wrk()
    connections = [int(c) for c in args.connections.split(",")]
    if args.together:
        return together(args, connections)
    port = free_port()
    chosen = commands(port)
    if args.only:
        chosen = {name: command for name, command in chosen.items() if name in args.only.split(",")}
    ratios: dict[tuple[str, int], list[float]] = {}
    for number in range(args.rounds):
        results = {}
        for name, command in chosen.items():
            with server(command, port):
                wrk(f"http://127.0.0.1:{port}/predict", BODY, 8, 2)  # warm up
                for c in connections:
                    results[(name, c)] = wrk(f"http://127.0.0.1:{port}/predict", BODY, c, args.seconds)
        print(f"round {number + 1}, load average {os.getloadavg()[0]:.2f}")
        print(f"{'server':10} {'conns':>5} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
        for (name, c), r in results.items():
            print(f"{name:10} {c:5d} {r['rps']:9.0f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} "
                  f"{r['non2xx'] + r['socket_errors']:7d}")
        if "trainml" not in chosen:
            continue
        for c in connections:
            ours = results[("trainml", c)]
            for base in ("raw", "fastapi"):
                if base in chosen:
                    other = results[(base, c)]
                    ratios.setdefault((base, c), []).append(ours["rps"] / other["rps"])
                    print(f"c={c}: {ours['rps'] / other['rps']:.2f}x {base}, "
                          f"p99 {ours['p99_ms']:.2f} ms vs {other['p99_ms']:.2f} ms")
        sys.stdout.flush()
    if args.rounds > 1:
        for (base, c), values in ratios.items():
            print(f"median over {len(values)} rounds, c={c}: {statistics.median(values):.2f}x {base} "
                  f"({', '.join(f'{v:.2f}' for v in values)})")


def together(args, connections: list[int]) -> None:
    bases = [name for name in ("raw", "fastapi") if not args.only or name in args.only.split(",")]
    ratios: dict[tuple[str, int], list[float]] = {}
    for number in range(args.rounds):
        for base in bases:
            with ExitStack() as stack, ThreadPoolExecutor(2) as pool:
                urls = []
                for name in ("trainml", base):
                    port = free_port()
                    stack.enter_context(server(commands(port)[name], port))
                    urls.append(f"http://127.0.0.1:{port}/predict")
                for url in urls:
                    wrk(url, BODY, 8, 2)  # warm up (and prove our function short)
                for c in connections:
                    ours, other = pool.map(lambda url, c=c: wrk(url, BODY, c, args.seconds, threads=1), urls)
                    ratio = ours["rps"] / other["rps"]
                    ratios.setdefault((base, c), []).append(ratio)
                    print(f"round {number + 1} c={c:<3} trainml {ours['rps']:7.0f} req/s, {base} {other['rps']:7.0f}: "
                          f"{ratio:.2f}x; p99 {ours['p99_ms']:.2f} ms vs {other['p99_ms']:.2f} ms; "
                          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    for (base, c), values in ratios.items():
        print(f"together, median over {len(values)} rounds, c={c}: {statistics.median(values):.2f}x {base} "
              f"({', '.join(f'{v:.2f}' for v in values)})")


if __name__ == "__main__":
    main()
