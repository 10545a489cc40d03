"""Behaviour under overload: do rejections steal the time of the calls that were accepted?

    python bench/overload.py [--seconds 10]

Limits of 4 running and 4 queued, a function that sleeps 50 ms, wrk at concurrency 64 on the other core.
The ideal is 4 / 0.05 s = 80 successful requests/s with every excess request answered 503 at once.
Baseline in the same run: uvicorn's own --limit-concurrency guarding a FastAPI app (the usual recipe).
Target (issue 2): at least 0.95x the ideal (76 successes/s).
"""

from __future__ import annotations

import argparse
import json
import sys

from harness import ROOT, free_port, require_wrk, server, wrk

ROUTE = {"verb": "POST", "path": "/slow", "file": "predict", "function": "slow",
         "body": [{"name": "text", "type": "str"}]}
IDEAL = 4 / 0.05


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    require_wrk()
    port = free_port()
    ours = [sys.executable, "-m", "trainml_cli.runtime", "--model-dir", str(ROOT / "bench" / "model"),
            "--port", str(port), "--route", json.dumps(ROUTE), "--max-concurrency", "4", "--max-queue", "4"]
    baseline = [sys.executable, "-m", "uvicorn", "bench.fastapi_app:app", "--port", str(port),
                "--log-level", "warning", "--no-access-log", "--limit-concurrency", "4"]
    with server(baseline, port):
        b = wrk(f"http://127.0.0.1:{port}/slow", '{"text": "x"}', 64, args.seconds)
    print(f"uvicorn --limit-concurrency 4 + FastAPI: {b['ok_rps']:.1f} successes/s "
          f"({b['ok_rps'] / IDEAL:.2f}x the ideal), "
          f"{b['non2xx']} rejected, {b['socket_errors']} socket errors")
    with server(ours, port):
        r = wrk(f"http://127.0.0.1:{port}/slow", '{"text": "x"}', 64, args.seconds)
    print(f"trainml: {r['ok_rps']:.1f} successes/s ({r['ok_rps'] / IDEAL:.2f}x the ideal {IDEAL:.0f}/s), "
          f"{r['non2xx']} rejected (503), {r['socket_errors']} socket errors, {r['rps']:.0f} responses/s in all")


if __name__ == "__main__":
    main()
