"""schemathesis against the control plane's /openapi.json (with the token) and a running endpoint's (with its
key): the run fails on a 5xx that is not the model's own error, a response that does not match its schema, an
undocumented status code or content type, and a wrong 405 Allow header.

Bounded: a fixed number of examples per operation, one worker, loopback only; the whole test takes well under
two minutes. Left out of the control plane's run: operations that start work outside the test's control (job and
model creation would clone random git URIs), the gzip upload (schemathesis cannot make one) and the two
never-ending streams (log and event followers).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import MODELS, route, run

pytest.importorskip("schemathesis")

HOOKS = Path(__file__).parent / "fuzz"
EXAMPLES = "15"
# Schema-valid bodies pydantic coerces ("3" for an int, false for 0) are documented behaviour, as in FastAPI:
# the data-acceptance checks would call them failures.
EXCLUDED_CHECKS = "negative_data_rejection,positive_data_acceptance,not_a_server_error"
UNFUZZED = r"^/api/(jobs|models|uploads|dashboard/jobs|dashboard/check|dashboard/events|jobs/\{job\}/logs/stream)$"


def schemathesis_run(url: str, header: str, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    command = shutil.which("schemathesis") or shutil.which("st")
    assert command, "schemathesis is installed with the test extra: pip install -e '.[test]'"
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "fuzz_hooks",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(HOOKS), os.environ.get("PYTHONPATH")]))}
    return subprocess.run(
        [command, "run", url + "/openapi.json", "-H", header, "-n", EXAMPLES, "--seed", "12", "-w", "1",
         "--exclude-checks", EXCLUDED_CHECKS, "--request-timeout", "20", "--no-color", *extra],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )


def test_schemathesis_finds_nothing_in_the_control_plane_or_an_endpoint(control_plane, tmp_path):
    types = [{"name": "text", "type": "str"}, {"name": "n", "type": "int", "optional": True, "default_value": "1"},
             {"name": "x", "type": "float", "optional": True, "default_value": "0.5"},
             {"name": "flag", "type": "bool", "optional": True},
             {"name": "d", "type": "dict", "optional": True}, {"name": "l", "type": "list", "optional": True}]
    routes = [route("/echo", "echo", types, file="predict"), route("/echo", "echo", types[1:], verb="GET")]

    async def scenario():
        async with control_plane.client() as client:
            job = await client.jobs.create("fuzzed",
                                           model={"source_type": "local", "source_uri": str(MODELS / "types")},
                                           endpoint={"routes": routes, "auth": True})
            await job.wait_for("running", timeout=60)
            return job, (await job.connection())["key"]

    job, key = run(scenario())
    plane = schemathesis_run(control_plane.url, f"Authorization: Bearer {control_plane.token}", tmp_path,
                             "--exclude-path-regex", UNFUZZED)
    assert plane.returncode == 0, plane.stdout[-6000:]
    endpoint = schemathesis_run(job.url, f"Authorization: Bearer {key}", tmp_path)
    assert endpoint.returncode == 0, endpoint.stdout[-6000:]
    assert "Tested: 3" in endpoint.stdout and " passed" in endpoint.stdout, endpoint.stdout[-3000:]
    assert control_plane.api("GET", f"/api/jobs/{job.id}").json()["status"] == "running"
