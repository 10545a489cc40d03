"""File uploads: 10 MiB multipart bodies to our `file` param and to FastAPI's `UploadFile`, in one run.

    python bench/upload.py [--seconds 10] [--connections 1,4] [--mib 10]

Both servers run one process on core 0 and answer the file's size and sha256 (read from disk in 1 MiB chunks,
the same function); wrk on core 1 sends the same body (one random file part and one form field). Reported per
server and connection count: requests per second, p50/p99, and the server's peak RSS (VmHWM, the largest of its
processes) over the whole run. Targets (issue 21): req/s at least 1x FastAPI's, peak RSS at most 1x.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import urllib.request

from harness import LOAD_CORE, ROOT, free_port, parse_wrk, pinned, require_wrk, server

BOUNDARY = "benchboundary7MA4YWxkTrZu0gW"
ROUTE = {"verb": "POST", "path": "/digest", "file": "predict", "function": "digest",
         "body": [{"name": "image", "type": "file"}, {"name": "count", "type": "int", "optional": True}]}


def body(size: int) -> bytes:
    head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"count\"\r\n\r\n3\r\n"
            f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"blob.bin\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    return head + os.urandom(size) + f"\r\n--{BOUNDARY}--\r\n".encode()


def load(url: str, path: str, connections: int, seconds: int) -> dict:
    script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    script.write(f'wrk.method = "POST"\nlocal f = io.open("{path}", "rb")\nwrk.body = f:read("*a")\nf:close()\n'
                 f'wrk.headers["Content-Type"] = "multipart/form-data; boundary={BOUNDARY}"\n')
    script.close()
    command = ["wrk", "-t", str(min(2, connections)), "-c", str(connections), "-d", f"{seconds}s", "--latency",
               "--timeout", "30s", "-s", script.name, url]
    try:
        out = subprocess.run(pinned(command, LOAD_CORE), capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(script.name)
    return parse_wrk(out, seconds)


def peak_rss_mib(group: int) -> float:
    """The largest VmHWM (peak resident set) among the processes of a process group."""
    peak = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.getpgid(int(entry)) != group:
                continue
            with open(f"/proc/{entry}/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]))
        except (OSError, ProcessLookupError):
            continue
    return peak / 1024


def check(url: str, data: bytes, expected: str) -> None:
    request = urllib.request.Request(url, data=data, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.loads(response.read())
    if answer.get("sha256") != expected or answer.get("count") != 3:
        raise SystemExit(f"{url} answered {answer}, not the upload's digest")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", default="1,4")
    parser.add_argument("--mib", type=float, default=10)
    args = parser.parse_args()
    require_wrk()
    size = int(args.mib * 1024 * 1024)
    data = body(size)
    head_end = data.index(b"\r\n\r\n", data.index(b'name="image"')) + 4
    expected = hashlib.sha256(data[head_end:head_end + size]).hexdigest()
    with tempfile.NamedTemporaryFile(suffix=".body", delete=False) as file:
        file.write(data)
    port = free_port()
    servers = {
        "trainml file param": ([sys.executable, "-m", "trainml_cli.runtime", "--model-dir",
                                str(ROOT / "bench" / "uploads"), "--port", str(port), "--route", json.dumps(ROUTE),
                                "--max-body-size", str(size + 1024 * 1024)]),
        "fastapi UploadFile": [sys.executable, "-m", "uvicorn", "bench.upload_app:app", "--port", str(port),
                               "--log-level", "warning", "--no-access-log"],
    }
    results: dict = {}
    try:
        for name, command in servers.items():
            with server(command, port) as proc:
                results[(name, "idle")] = peak_rss_mib(proc.pid)
                url = f"http://127.0.0.1:{port}/digest"
                check(url, data, expected)
                for connections in map(int, args.connections.split(",")):
                    results[(name, connections)] = load(url, file.name, connections, args.seconds)
                results[(name, "rss")] = peak_rss_mib(proc.pid)
    finally:
        os.unlink(file.name)
    print(f"{args.mib:g} MiB multipart uploads, {args.seconds}s per load, server on one core")
    print(f"{'server':<22}{'conns':>6}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'non2xx':>8}{'peak RSS MiB':>14}"
          f"{'at start':>10}")
    for name in servers:
        for connections in map(int, args.connections.split(",")):
            r = results[(name, connections)]
            print(f"{name:<22}{connections:>6}{r['ok_rps']:>9.1f}{r['p50_ms'] or 0:>9.1f}{r['p99_ms'] or 0:>9.1f}"
                  f"{r['non2xx']:>8}{results[(name, 'rss')]:>14.1f}{results[(name, 'idle')]:>10.1f}")
    ours, theirs = servers
    for connections in map(int, args.connections.split(",")):
        ratio = results[(ours, connections)]["ok_rps"] / max(results[(theirs, connections)]["ok_rps"], 1e-9)
        print(f"req/s ratio at {connections} connection(s): {ratio:.2f}x FastAPI (target >= 1x)")
    print(f"peak RSS ratio: {results[(ours, 'rss')] / results[(theirs, 'rss')]:.2f}x FastAPI (target <= 1x); "
          f"growth under load: {results[(ours, 'rss')] - results[(ours, 'idle')]:.1f} MiB vs "
          f"{results[(theirs, 'rss')] - results[(theirs, 'idle')]:.1f} MiB")


if __name__ == "__main__":
    main()
