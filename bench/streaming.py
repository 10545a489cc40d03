"""Streaming: an SSE route yielding 1,000 small items as fast as it can, against FastAPI's `StreamingResponse` and
LitServe's `stream=True` over the same generator (bench/streams/predict.py), in one run.

    python bench/streaming.py [--seconds 5] [--connections 1,32] [--rounds 3] [--items 1000]

Each server runs on core 0 (all its processes; LitServe runs the function in a worker process); the load runs on
core 1: an asyncio client (uvloop) that keeps each connection busy with one stream after another (HTTP/1.1
keep-alive, `Accept: text/event-stream`) and counts the items as their bytes arrive. wrk cannot be used: it sees
a stream only when it has ended. Reported per server and connection count: items per second received, streams
per second, and first-item latency (request sent -> first item's bytes in, p50 and p99). Every stream must bring
exactly --items items or the run stops. The servers take turns within each round, in a rotated order, and the
medians over the rounds are the figures. Target (issue 21): items/s at least 2x FastAPI's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from harness import LOAD_CORE, ROOT, free_port, pinned, server

ITEM = b'data: "tok'  # an item's event; our endpoint's closing `event: end` has `data: {}` and is not counted
END = b"\r\n0\r\n\r\n"  # the last chunk of a chunked body
ROUTE = {"verb": "POST", "path": "/tokens", "file": "predict", "function": "tokens",
         "body": [{"name": "n", "type": "int", "optional": True}]}


async def one_connection(port: int, request: bytes, items: int, deadline: float, out: dict) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < deadline:
            sent = time.perf_counter()
            writer.write(request)
            count, tail, first = 0, b"", None
            while True:
                data = await reader.read(1 << 16)
                if not data:
                    raise SystemExit(f"port {port}: the connection closed mid-stream after {count} items")
                joined = tail + data
                # Items are counted where their prefix ends: the tail (shorter than ITEM) cannot hold a whole one.
                count += joined.count(ITEM)
                if first is None and count:
                    first = time.perf_counter() - sent
                if joined.endswith(END):
                    break
                tail = joined[-(len(ITEM) - 1):]
            if count != items:
                raise SystemExit(f"port {port}: a stream brought {count} items, not {items}")
            out["items"] += count
            out["streams"] += 1
            out["first"].append(first)
    finally:
        writer.close()


def load(port: int, connections: int, seconds: float, items: int) -> dict:
    """Runs in the load process (pinned to its core): streams on `connections` connections for `seconds`."""
    import uvloop

    body = json.dumps({"n": items}).encode()
    request = (f"POST /tokens HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    out = {"items": 0, "streams": 0, "first": []}

    async def main():
        started = time.perf_counter()
        cpu = time.process_time()
        await asyncio.gather(*(one_connection(port, request, items, started + seconds, out)
                               for _ in range(connections)))
        out["elapsed"] = time.perf_counter() - started
        out["client_cpu"] = (time.process_time() - cpu) / out["elapsed"]

    uvloop.run(main())
    first = sorted(out.pop("first"))
    out["items_per_s"] = out["items"] / out["elapsed"]
    out["streams_per_s"] = out["streams"] / out["elapsed"]
    out["first_p50_ms"] = 1000 * statistics.median(first)
    out["first_p99_ms"] = 1000 * first[min(len(first) - 1, int(0.99 * len(first)))]
    return out


def measure(port: int, connections: int, seconds: float, items: int) -> dict:
    command = [sys.executable, __file__, "--load", str(port), str(connections), str(seconds), str(items)]
    done = subprocess.run(pinned(command, LOAD_CORE), capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"the load failed: {done.stdout}{done.stderr}")
    return json.loads(done.stdout)


def servers(port: int, before: str | None) -> dict:
    ours = [sys.executable, "-m", "trainml_cli.runtime", "--model-dir", str(ROOT / "bench" / "streams"), "--port",
            str(port), "--route", json.dumps(ROUTE)]
    return {
        "trainml endpoint": (ours, "/ping", ROOT),
        # Started from that tree: `python -m` puts the working directory first on sys.path.
        **({"trainml, --before tree": (ours, "/ping", Path(before).resolve())} if before else {}),
        "fastapi StreamingResponse": ([sys.executable, "-m", "uvicorn", "bench.streaming_app:app", "--port",
                                       str(port), "--log-level", "warning", "--no-access-log"], "/ping", ROOT),
        "litserve stream=True": ([sys.executable, str(ROOT / "bench" / "streaming_litserve.py"), str(port)],
                                 "/health", ROOT),
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--load":
        port, connections, seconds, items = sys.argv[2:6]
        print(json.dumps(load(int(port), int(connections), float(seconds), int(items))))
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # so a stopped run still stops its server
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--connections", default="1,32")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--only", help="comma-separated server names to run (default: all)")
    parser.add_argument("--before", metavar="TREE", help="also run the endpoint from another checkout of this "
                        "project (its PYTHONPATH), e.g. a worktree of the commit before a change")
    args = parser.parse_args()
    counts = [int(c) for c in args.connections.split(",")]
    port = free_port()
    table = servers(port, args.before)
    names = [n for n in table if not args.only or any(o in n for o in args.only.split(","))]
    results: dict = {(n, c): [] for n in names for c in counts}
    loads = [os.getloadavg()[0]]
    for round_ in range(args.rounds):
        order = names[round_ % len(names):] + names[:round_ % len(names)]
        for name in order:
            command, ready, cwd = table[name]
            with server(command, port, cwd=cwd, ready_path=ready):
                measure(port, 1, 1, args.items)  # warm up: first imports, first connections
                for connections in counts:
                    r = measure(port, connections, args.seconds, args.items)
                    results[(name, connections)].append(r)
                    print(f"round {round_ + 1} {name:<26}{connections:>4} conns {r['items_per_s']:>10,.0f} items/s "
                          f"first item p50 {r['first_p50_ms']:.2f} ms p99 {r['first_p99_ms']:.2f} ms "
                          f"(client CPU {r['client_cpu']:.0%})", flush=True)
        loads.append(os.getloadavg()[0])
    print(f"\n{args.items} items per stream, SSE, {args.seconds:g}s per load, server on core 0, load on core "
          f"{LOAD_CORE}; medians of {args.rounds} round(s); 1-minute load average "
          f"{min(loads):.2f} to {max(loads):.2f}")
    print(f"{'server':<27}{'conns':>6}{'items/s':>11}{'streams/s':>11}{'first p50 ms':>14}{'first p99 ms':>14}")
    med = {}
    for name in names:
        for connections in counts:
            rs = results[(name, connections)]
            med[(name, connections)] = m = {k: statistics.median(r[k] for r in rs)
                                            for k in ("items_per_s", "streams_per_s", "first_p50_ms", "first_p99_ms")}
            print(f"{name:<27}{connections:>6}{m['items_per_s']:>11,.0f}{m['streams_per_s']:>11.1f}"
                  f"{m['first_p50_ms']:>14.2f}{m['first_p99_ms']:>14.2f}")
    ours = "trainml endpoint" if "trainml endpoint" in names else None
    for connections in counts:
        for other in names:
            if ours and other != ours:
                ratios = [a["items_per_s"] / b["items_per_s"] for a, b in
                          zip(results[(ours, connections)], results[(other, connections)])]
                print(f"items/s at {connections} connection(s): {statistics.median(ratios):.2f}x {other} "
                      f"(rounds: {', '.join(f'{x:.2f}' for x in ratios)})"
                      + (" (target >= 2x)" if other.startswith("fastapi") else ""))
    print(f"peak client CPU share of its core: {max(r['client_cpu'] for rs in results.values() for r in rs):.0%}")


if __name__ == "__main__":
    main()
