"""Batching: a numpy MLP served four ways, at 64 connections, in one run.

    python bench/batching.py [--seconds 10] [--rounds 1] [--only NAME,...] [--together]

The model (bench/mlp/predict.py) reads about 19 MB of weights per call, whatever the batch size. Compared:
our batched route (max_size 32) and our unbatched route, both with default settings (8 threads); our
unbatched route with one thread (--max-concurrency 1, its best on one core: eight forward passes at once only
evict each other's weights from the cache); LitServe with its own batching (max_batch_size 32, batch_timeout
5 ms) and a hand-written FastAPI app. Each server runs on core 0 (with all its processes), wrk on core 1;
BLAS uses one thread everywhere. Targets (issue 11): batched >= 2x our unbatched route and >= 4x LitServe's
batching, p99 no worse than our unbatched route, no non-2xx answers. For our servers it also prints the
distributions of batch sizes and queue waits over the measured run, from the endpoint's own /metrics.

With --together, our batched route runs at the same time as each other server, both on core 0, each loaded by
its own wrk on core 1: the kernel gives both equal CPU time, so the ratio of their requests/s is the ratio of
their costs per request, whatever else loads the machine (bench/throughput.py says more).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

from harness import ROOT, free_port, require_wrk, server, wrk

ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
              "NUMEXPR_NUM_THREADS": "1", "VECLIB_MAXIMUM_THREADS": "1"}
BODY_PARAMS = [{"name": "x", "type": "list"}]
CONNECTIONS = 64
DRAIN_SECONDS = 3
HISTOGRAMS = {"trainml_batch_size": "batch size", "trainml_queue_wait_seconds": "queue wait s"}


def buckets(port: int) -> dict[str, dict[float, float]]:
    """The endpoint's cumulative histogram buckets of /predict, from its Prometheus text: name -> {le: count}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    found: dict[str, dict[float, float]] = {name: {} for name in HISTOGRAMS}
    for line in text.splitlines():
        for name in HISTOGRAMS:
            if line.startswith(name + "_bucket{") and 'route="POST /predict"' in line:
                bound = line.split('le="', 1)[1].split('"', 1)[0]
                found[name][float(bound)] = float(line.rsplit(" ", 1)[1])
    return found


def distribution(before: dict, after: dict) -> list[str]:
    """What the measured run added to each histogram: the share of calls (or batches) at or under each bound,
    and the bound the median and the 99th percentile fall under."""
    lines = []
    for name, label in HISTOGRAMS.items():
        added = {le: after[name].get(le, 0) - before[name].get(le, 0) for le in sorted(after[name])}
        total = added.get(float("inf"), 0)
        if not total:
            continue
        shares = ", ".join(f"<={le:g}: {count / total:.0%}" for le, count in added.items()
                           if le != float("inf") and 0 < count < total) or "all in one bucket"
        p50 = next(le for le, count in added.items() if count >= total * 0.5)
        p99 = next(le for le, count in added.items() if count >= total * 0.99)
        lines.append(f"  {label}: {total:.0f} observed, p50 <= {p50:g}, p99 <= {p99:g} ({shares})")
    return lines


def route(function: str, batch: dict | None = None) -> dict:
    spec = {"verb": "POST", "path": "/predict", "file": "predict", "function": function, "body": BODY_PARAMS}
    if batch:
        spec["batch"] = batch
    return spec


def servers(port: int) -> dict[str, tuple[list[str], str]]:
    runtime = [sys.executable, "-m", "trainml_cli.runtime", "--model-dir", str(ROOT / "bench" / "mlp"), "--port",
               str(port)]
    return {
        "trainml batched": (runtime + ["--route", json.dumps(route("predict_batch", {"max_size": 32}))], "/ping"),
        "batched 1 thread": (runtime + ["--route", json.dumps(route("predict_batch", {"max_size": 32})),
                             "--max-concurrency", "1"], "/ping"),
        "trainml unbatched": (runtime + ["--route", json.dumps(route("predict"))], "/ping"),
        "unbatched 1 thread": (runtime + ["--route", json.dumps(route("predict")), "--max-concurrency", "1"], "/ping"),
        "litserve batched": ([sys.executable, str(ROOT / "bench" / "mlp_litserve.py"), str(port)], "/health"),
        "fastapi": ([sys.executable, "-m", "uvicorn", "bench.mlp_apps:app", "--port", str(port), "--log-level",
                     "warning", "--no-access-log"], "/ping"),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--only", help="comma-separated server names to run")
    parser.add_argument("--together", action="store_true", help="each server at the same time as the batched route")
    args = parser.parse_args()
    require_wrk()
    rng = random.Random(0)
    body = json.dumps({"x": [round(rng.uniform(-1, 1), 3) for _ in range(256)]})
    if args.together:
        return together(args, body)
    port = free_port()
    chosen = servers(port)
    if args.only:
        chosen = {k: v for k, v in chosen.items() if k in args.only.split(",")}
    rounds = []
    for number in range(args.rounds):
        results = {}
        for name, (command, ready) in chosen.items():
            with server(command, port, ready_path=ready, env=ONE_THREAD):
                url = f"http://127.0.0.1:{port}/predict"
                wrk(url, body, CONNECTIONS, 2)  # warm up
                # wrk closes its connections with requests still queued; a server finishes those first (none drops
                # a queued call whose client left), so let it drain before the measured run.
                time.sleep(DRAIN_SECONDS)
                ours = name.startswith(("trainml", "unbatched"))
                before = buckets(port) if ours else None
                results[name] = wrk(url, body, CONNECTIONS, args.seconds)
                if ours:
                    time.sleep(1)  # the workers flush their sums to the shared files every 0.5 s
                    results[name]["distribution"] = distribution(before, buckets(port))
        rounds.append(results)
        print(f"round {number + 1}: c={CONNECTIONS}, {args.seconds} s per server")
        print(f"{'server':18} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8} {'errors':>7}")
        for name, r in results.items():
            print(f"{name:18} {r['rps']:8.0f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} "
                  f"{r['non2xx']:8d} {r['socket_errors']:7d}")
        for name, r in results.items():
            if r.get("distribution"):
                print(f"{name}:", *r["distribution"], sep="\n")
        ours = results.get("trainml batched")
        if ours:
            for name, r in results.items():
                if name != "trainml batched":
                    print(f"batched vs {name}: {ours['rps'] / r['rps']:.2f}x throughput, "
                          f"p99 {ours['p99_ms']:.1f} ms vs {r['p99_ms']:.1f} ms")
        sys.stdout.flush()


def together(args, body: str) -> None:
    names = [name for name in servers(0) if name != "trainml batched" and (not args.only or name in args.only)]
    ratios: dict[str, list[float]] = {}
    for number in range(args.rounds):
        for name in names:
            with ExitStack() as stack, ThreadPoolExecutor(2) as pool:
                urls = []
                for which in ("trainml batched", name):
                    port = free_port()
                    command, ready = servers(port)[which]
                    stack.enter_context(server(command, port, ready_path=ready, env=ONE_THREAD))
                    urls.append(f"http://127.0.0.1:{port}/predict")
                list(pool.map(lambda url: wrk(url, body, CONNECTIONS, 2, threads=1), urls))  # warm up
                time.sleep(DRAIN_SECONDS)
                ours, other = pool.map(lambda url: wrk(url, body, CONNECTIONS, args.seconds, threads=1), urls)
                ratio = ours["rps"] / other["rps"]
                ratios.setdefault(name, []).append(ratio)
                print(f"round {number + 1}: batched {ours['rps']:6.0f} req/s (p99 {ours['p99_ms']:.1f} ms, non-2xx "
                      f"{ours['non2xx']}), {name} {other['rps']:6.0f} (p99 {other['p99_ms']:.1f} ms, non-2xx "
                      f"{other['non2xx']}): {ratio:.2f}x; load average {os.getloadavg()[0]:.2f}", flush=True)
    for name, values in ratios.items():
        print(f"together, median over {len(values)} rounds: batched {statistics.median(values):.2f}x {name} "
              f"({', '.join(f'{v:.2f}' for v in values)})")


if __name__ == "__main__":
    main()
