"""What an endpoint's process environment holds: an allowlist of the control plane's, what the job sets and what
the platform sets; never the operator's other variables (cloud credentials, tokens). Real control plane and
endpoint processes; the model answers its whole os.environ."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import MODELS, route, run
from trainml_cli.endpointenv import allowed

ENVIRON = {"source_type": "local", "source_uri": str(MODELS / "environ")}
ROUTES = {"routes": [route("/environ", "environ", [], verb="GET")]}
# The operator's: what a control plane started from a shell or a CI job commonly has.
OPERATOR = {"AWS_SECRET_ACCESS_KEY": "aws-secret", "TRAINML_TEST_LEAK": "leak", "GITHUB_TOKEN": "ghp_x",
            "EXTRA_PASSED": "passed on", "LC_TIME": "C", "https_proxy": "http://127.0.0.1:9"}
# What the platform and the runtime set for the endpoint themselves (server/driver.py, runtime/metrics.py; the
# line stamps that keep stdout and stderr in print order, contracts.OUTPUT_STAMPS_ENV).
PLATFORM = {"TRAINML_JOB_ID", "PYTHONUNBUFFERED", "PYTHONPATH", "VIRTUAL_ENV", "PROMETHEUS_MULTIPROC_DIR",
            "TRAINML_OUTPUT_STAMPS"}


def test_an_endpoint_sees_the_allowlist_the_job_and_pass_env_but_none_of_the_operators_other_variables(
        start_control_plane):
    plane = start_control_plane("--pass-env", "EXTRA_PASSED,NOT_SET_ANYWHERE", env=OPERATOR)

    async def scenario():
        async with plane.client() as client:
            await client.secrets.put("MODEL_TOKEN", "from-the-vault")
            job = await client.jobs.create("environ", model=ENVIRON, endpoint=ROUTES, wait=True, environment={
                "env": [{"key": "GREETING", "value": "hello"}], "secrets": ["MODEL_TOKEN"]})
            seen = await job.call("/environ")
            await job.remove(force=True)
            return seen

    seen = run(scenario())
    assert "AWS_SECRET_ACCESS_KEY" not in seen and "TRAINML_TEST_LEAK" not in seen and "GITHUB_TOKEN" not in seen
    assert "TRAINML_API_TOKEN" not in seen
    unexpected = sorted(name for name in seen if not allowed(name) and name not in PLATFORM
                        and name not in ("GREETING", "MODEL_TOKEN", "EXTRA_PASSED"))
    assert unexpected == [], f"the control plane's variables reached the endpoint: {unexpected}"
    assert seen["GREETING"] == "hello" and seen["MODEL_TOKEN"] == "from-the-vault"
    assert seen["EXTRA_PASSED"] == "passed on" and "NOT_SET_ANYWHERE" not in seen
    assert seen["LC_TIME"] == "C" and seen["https_proxy"] == "http://127.0.0.1:9"  # allowlisted: inherited
    assert seen["PATH"] == os.environ["PATH"] and seen["CUDA_VISIBLE_DEVICES"] == ""
    if os.environ.get("PYTHONPATH"):  # a source checkout: the endpoint runs the control plane's trainml_cli
        assert seen["PYTHONPATH"] == str(MODELS.parent.parent.resolve())


def test_pass_env_is_also_read_from_the_environment(start_control_plane):
    plane = start_control_plane(env={**OPERATOR, "TRAINML_PASS_ENV": "EXTRA_PASSED"})

    async def scenario():
        async with plane.client() as client:
            job = await client.jobs.create("environ", model=ENVIRON, endpoint=ROUTES, wait=True)
            seen = await job.call("/environ")
            await job.remove(force=True)
            return seen

    seen = run(scenario())
    assert seen["EXTRA_PASSED"] == "passed on" and "AWS_SECRET_ACCESS_KEY" not in seen


def test_a_bad_pass_env_name_is_exit_2_before_anything_starts(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINML_")} | {"TRAINML_HOME": str(tmp_path)}
    for value, message in (("GOOD,NOT-A-NAME", "'NOT-A-NAME' is not an environment variable name"),
                           ("TRAINML_API_TOKEN", "TRAINML_API_TOKEN is the control plane's own API token")):
        for command in ([sys.executable, "-m", "trainml_cli", "server", "start", "--pass-env", value],
                        [sys.executable, "-m", "trainml_cli.server", "--pass-env", value]):
            done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
            assert done.returncode == 2 and message in done.stderr, (command, done.stderr)
            assert "Traceback" not in done.stderr
    assert not (tmp_path / "server.json").exists()


def test_an_environments_build_sees_the_allowlist_and_the_installers_settings_but_not_the_operators_secrets(
        start_control_plane):
    # The model's own package runs its setup.py in the build: model code, with the operator's variables in reach.
    operator = {k: v for k, v in OPERATOR.items() if k != "https_proxy"}  # the build reaches the real index
    plane = start_control_plane(env={**operator, "UV_HTTP_TIMEOUT": "120"})

    async def scenario():
        async with plane.client() as client:
            job = await client.jobs.create("built", model={"source_type": "local",
                                                           "source_uri": str(MODELS / "build_environ")},
                                           endpoint={"routes": [route("/names", "names", [], verb="GET")]})
            await job.wait_for("running", timeout=300)
            seen = await job.call("/names")
            await job.remove(force=True)
            return seen

    seen = run(scenario())
    assert "PATH" in seen and "UV_HTTP_TIMEOUT" in seen, seen  # what a build needs, and the installer's settings
    assert "AWS_SECRET_ACCESS_KEY" not in seen and "TRAINML_TEST_LEAK" not in seen and "GITHUB_TOKEN" not in seen
