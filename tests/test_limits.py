"""Limits that fit the machine: past one, the CLI exits 2, the API answers 422, the runtime exits 2, each naming
the limit; and a machine that refuses the endpoint's threads is never reported as the model's fault."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys

import pytest
from click.testing import CliRunner

from endpoint_process import MODELS, param, route
from trainml_cli.cli.main import main

CPUS = os.cpu_count()
ECHO = str(MODELS / "echo")
ROUTE = json.dumps(route("/predict", "predict", [param("text", "str")]))
NOWHERE = "http://127.0.0.1:9"  # nothing listens: a command that sent a request would exit 1, not 2


def run_cli(*argv, env=None):
    with CliRunner().isolation(env={"TRAINML_API_URL": NOWHERE, "NO_COLOR": "1", **(env or {})}) as (out, err, _):
        code = main(list(argv))
    return code, err.getvalue().decode()


@pytest.mark.parametrize("argv, message", [
    (("job", "create", "endpoint", "x", "--model-dir", ECHO, "--route", ROUTE, "--max-concurrency", "100000000"),
     "Invalid value for '--max-concurrency': 100000000 is more than 1,024 (threads per worker)"),
    (("job", "create", "endpoint", "x", "--model-dir", ECHO, "--route", ROUTE, "--max-queue", "1000001"),
     "Invalid value for '--max-queue': 1000001 is more than 1,000,000 (requests waiting per worker)"),
    (("endpoint", "serve", "--model-dir", ECHO, "--route", ROUTE, "--workers", "500"),
     f"Invalid value for '--workers': 500 is more than {CPUS} (this machine's CPUs)"),
    (("endpoint", "serve", "--model-dir", ECHO, "--route", ROUTE, "--max-concurrency", "1025"),
     "Invalid value for '--max-concurrency': 1025 is more than 1,024 (threads per worker)"),
], ids=["create-concurrency", "create-queue", "serve-workers", "serve-concurrency"])
def test_the_cli_refuses_past_a_limit_with_exit_2(argv, message, tmp_path):
    code, err = run_cli(*argv, env={"TRAINML_HOME": str(tmp_path)})
    assert code == 2
    assert message in err


@pytest.mark.parametrize("payload, message", [
    ({"endpoint": {"routes": [json.loads(ROUTE)], "max_concurrency": 100000000}},
     "endpoint.max_concurrency: 100000000 is more than 1,024 (threads per worker)"),
    ({"endpoint": {"routes": [json.loads(ROUTE)], "max_queue": 2000000}},
     "endpoint.max_queue: 2000000 is more than 1,000,000 (requests waiting per worker)"),
    ({"endpoint": {"routes": [json.loads(ROUTE)]}, "resources": {"cpu_count": 500}},
     f"resources.cpu_count: 500 is more than this machine's {CPUS} CPUs"),
    ({"endpoint": {"routes": [{**json.loads(ROUTE), "batch": {"max_size": 2000}}]}},
     "route 1 (POST /predict): batch.max_size: 2000 is more than 1024 (allowed: 1 to 1024)"),
], ids=["concurrency", "queue", "cpu-count", "batch-size"])
def test_the_api_answers_422_naming_the_limit_and_creates_nothing(shared_plane, payload, message):
    body = {"name": "too-big", "model": {"source_type": "local", "source_uri": ECHO, "upload_id": "none"}, **payload}
    answer = shared_plane.api("POST", "/api/jobs", json=body)
    assert answer.status_code == 422
    assert answer.json()["message"] == message
    assert shared_plane.api("GET", "/api/jobs").json() == []


def test_the_cli_exits_2_when_the_server_refuses_the_cpu_count(shared_plane, tmp_path):
    code, err = run_cli("job", "create", "endpoint", "x", "--model-dir", ECHO, "--route", ROUTE, "--cpu-count", "500",
                        env={"TRAINML_API_URL": shared_plane.url, "TRAINML_API_TOKEN": shared_plane.token,
                             "TRAINML_HOME": str(tmp_path)})
    assert code == 2
    assert f"resources.cpu_count: 500 is more than this machine's {CPUS} CPUs" in err


def test_the_runtime_command_line_refuses_past_a_limit(tmp_path):
    result = subprocess.run([sys.executable, "-m", "trainml_cli.runtime", "--model-dir", ECHO, "--route", ROUTE,
                             "--port", "0", "--max-queue", "1000001"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "--max-queue: 1000001 is more than 1,000,000" in result.stderr


def test_threads_the_machine_refuses_are_a_platform_failure_not_a_load_failure():
    # 1 GB of address space cannot hold 1024 thread stacks (8 MB each by default): thread start fails.
    def limit_memory():
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    result = subprocess.run([sys.executable, "-m", "trainml_cli.runtime", "--model-dir", ECHO, "--route", ROUTE,
                             "--port", "0", "--max-concurrency", "1024"], capture_output=True, text=True,
                            timeout=60, preexec_fn=limit_memory)
    assert result.returncode == 4, result.stderr
    assert "error: the endpoint could not start: the machine refused the endpoint's 1024 call threads" in result.stderr
    assert "lower --max-concurrency" in result.stderr
    assert "model code" not in result.stderr
