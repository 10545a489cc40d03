"""How much CPU a control plane spends from launch until it first answers `/api/health`.

    python bench/control_plane_start.py [-n 5]

Each start is a fresh `python -m trainml_cli.server --port 0` in a fresh home, as tests/conftest.py's
`start_control_plane` and the SDK's autostart launch it. CPU time (user + system, read from /proc when the first
health check answers) is reported rather than wall time: the machine running the suite is shared, and CPU time
does not count the time the process waited for a core. The median is printed beside `python -c "import fastapi"`
measured the same way in the same run, the floor that import alone sets.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def control_plane_cpu(home: Path) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINML_")}
    process = subprocess.Popen([sys.executable, "-m", "trainml_cli.server", "--home", str(home), "--port", "0"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise SystemExit(f"the control plane exited with {process.returncode}")
            try:
                info = json.loads((home / "server.json").read_text())
                if info.get("pid") == process.pid:
                    with urllib.request.urlopen(info["url"] + "/api/health", timeout=2) as answer:
                        if answer.status == 200:
                            return cpu_seconds(process.pid)
            except (OSError, ValueError):
                pass
            time.sleep(0.005)
        raise SystemExit("the control plane did not answer within 60 s")
    finally:
        process.terminate()
        process.wait(timeout=30)


def import_cpu(module: str) -> float:
    process = subprocess.run([sys.executable, "-c", f"import os, {module}; t = os.times(); "
                              f"print(t.user + t.system)"], capture_output=True, text=True, check=True)
    return float(process.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=5)
    n = parser.parse_args().n
    planes, floors = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(n):
            planes.append(control_plane_cpu(Path(tmp) / f"home{i}"))
            floors.append(import_cpu("fastapi"))
    plane, floor = statistics.median(planes), statistics.median(floors)
    print(f"control plane, launch to first answer: {plane * 1000:.0f} ms CPU (median of {n}; "
          f"{', '.join(f'{t * 1000:.0f}' for t in planes)})")
    print(f"python -c 'import fastapi':            {floor * 1000:.0f} ms CPU; ratio {plane / floor:.2f}x")


if __name__ == "__main__":
    main()
