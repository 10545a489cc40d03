"""Throughput and latency: our endpoint against a hand-written FastAPI + pydantic app, same function.

    python bench/throughput.py [--seconds 10]

Each server runs on core 0 with default settings (our access log on), wrk on core 1, at concurrency 8 and 64.
Target (issue 2): at least 3x FastAPI's requests/s with p99 no worse.
"""

from __future__ import annotations

import argparse
import json
import sys

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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", default="8,64")
    args = parser.parse_args()
    require_wrk()
    connections = [int(c) for c in args.connections.split(",")]
    port = free_port()
    ours = [sys.executable, "-m", "trainml_cli.runtime", "--model-dir", str(ROOT / "bench" / "model"),
            "--port", str(port), "--route", json.dumps(ROUTE)]
    fastapi = [sys.executable, "-m", "uvicorn", "bench.fastapi_app:app", "--port", str(port), "--log-level", "warning",
               "--no-access-log"]
    results = {}
    for name, command in (("fastapi", fastapi), ("trainml", ours)):
        with server(command, port):
            wrk(f"http://127.0.0.1:{port}/predict", BODY, 8, 2)  # warm up
            for c in connections:
                results[(name, c)] = wrk(f"http://127.0.0.1:{port}/predict", BODY, c, args.seconds)
    print(f"{'server':10} {'conns':>5} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for (name, c), r in results.items():
        print(f"{name:10} {c:5d} {r['rps']:9.0f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} "
              f"{r['non2xx'] + r['socket_errors']:7d}")
    for c in connections:
        ours_r, base = results[("trainml", c)], results[("fastapi", c)]
        print(f"c={c}: throughput {ours_r['rps'] / base['rps']:.2f}x FastAPI, "
              f"p99 {ours_r['p99_ms']:.2f} ms vs {base['p99_ms']:.2f} ms ({ours_r['p99_ms'] / base['p99_ms']:.2f}x)")


if __name__ == "__main__":
    main()
