"""Rough edges a new user met in the CLI (issue 24), each through the real control plane: what is printed before
an error, GPU types and the no-GPU advice, `job start` on a machine without the job's GPUs, Python versions."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import ControlPlane, kill_everything_under
from trainml_cli.cli.main import main

MODELS = Path(__file__).parent / "models"
ECHO = str(MODELS / "cli_echo")
ROUTE = json.dumps({"verb": "POST", "path": "/echo", "file": "predict", "function": "echo",
                    "body": [{"name": "text", "type": "str"}]})


def environ(plane: ControlPlane) -> dict:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TRAINML_HOME": str(plane.home),
            "TRAINML_API_URL": plane.url, "NO_COLOR": "1", "PYTHONPATH": os.environ.get("PYTHONPATH", "")}


def run_cli(env, *argv, input=None):
    with CliRunner().isolation(env=env, input=input) as (out, err, _):
        code = main(list(argv))
    return code, out.getvalue().decode(), err.getvalue().decode()


@pytest.fixture(scope="module")
def plane(tmp_path_factory):
    plane = ControlPlane(tmp_path_factory.mktemp("newuser") / "home", args=["--gpus", "none"]).start()
    yield plane
    plane.stop()
    kill_everything_under(plane.home)


@pytest.fixture(scope="module")
def env(plane):
    return environ(plane)


def create(env, name, *extra):
    return run_cli(env, "job", "create", "endpoint", name, "--model-dir", ECHO, "--route", ROUTE, *extra)


def job_names(env) -> list[str]:
    return [j["name"] for j in json.loads(run_cli(env, "job", "list", "--format", "json")[1])]


def test_no_gpu_refusal_names_the_cli_option(env):
    code, out, err = create(env, "wants-a100", "-gt", "a100")
    assert code == 2, err
    assert "asks for 1 GPU(s) of type a100 but this machine has 0" in err
    assert "use --gpu-type cpu to run without one" in err and "gpu_types" not in err
    assert "wants-a100" not in job_names(env)


def test_job_start_refuses_gpus_this_machine_no_longer_has(tmp_path):
    home = tmp_path / "home"
    plane = ControlPlane(home, args=["--gpus", "0:rtx3090"]).start()
    try:
        env = environ(plane)
        code, out, err = create(env, "gpu-job", "--gpu-type", "RTX 3090", "--no-connect", "--format", "json")
        assert code == 0, err
        assert json.loads(out)["resources"]["gpu_types"] == ["rtx3090"]  # as `-gt rtx3090` stores it
        assert run_cli(env, "job", "stop", "gpu-job")[0] == 0
        plane.stop()
        plane = ControlPlane(home, args=["--gpus", "none"]).start()  # the same home, on a machine without the GPU
        env = environ(plane)
        code, out, err = run_cli(env, "job", "start", "gpu-job")
        assert code == 2, err
        assert "asks for 1 GPU(s) of type rtx3090 but this machine has 0" in err
        assert "--gpu-type cpu" in err
        assert json.loads(run_cli(env, "job", "get", "gpu-job", "--format", "json")[1])["status"] == "stopped"
    finally:
        plane.stop()
        kill_everything_under(home)


@pytest.mark.parametrize("option", [["--python", "3.99"], ["-gt", "h100"]], ids=["python", "gpu"])
def test_nothing_claims_a_job_is_being_created_before_a_refusal(env, option):
    code, out, err = create(env, "refused", *option)
    assert code == 2, err
    assert err.startswith("Error: ") and "Creating job" not in err and out == ""
    assert "refused" not in job_names(env)


def test_an_unsupported_python_says_so_and_which_are(env):
    code, out, err = create(env, "old-python", "--python", "3.8")
    assert code == 2, err
    assert "Error: environment.python: Python 3.8 is not supported: endpoints run on Python 3.9 or newer; " \
           "available: " in err


def test_verbose_after_the_subcommand_and_format_on_commands_that_print_data(env):
    code, out, err = run_cli(env, "job", "list", "-v")
    assert code == 0, err
    assert out.split()[:6] == ["ID", "NAME", "STATUS", "URL", "RESOURCES", "CREATED"]
    code, out, err = run_cli(env, "job", "list", "-vv", "--format", "text")
    assert code == 0 and out.split()[6:8] == ["MODEL", "RATE"], err
    code, out, err = run_cli(env, "environment", "prune", "-f", "json")
    assert code == 0 and json.loads(out) == {"removed": []}, err
    code, out, err = create(env, "formats", "--no-connect", "--format", "json")
    assert code == 0, err
    code, out, err = run_cli(env, "job", "stop", "formats", "--format", "json")
    assert code == 0 and json.loads(out)["status"] == "stopped", err
    code, out, err = run_cli(env, "job", "start", "formats", "-f", "json", "-v")
    assert code == 0 and json.loads(out)["name"] == "formats", err
    assert run_cli(env, "job", "remove", "--force", "formats")[0] == 0


def test_a_model_from_git_stores_the_code_without_its_history(env, plane, tmp_path):
    import shutil
    import subprocess

    repo = tmp_path / "repo"
    shutil.copytree(ECHO, repo)
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    for command in (["init", "-q"], ["add", "."], ["commit", "-qm", "model"]):
        subprocess.run(git + command, check=True)
    code, out, err = run_cli(env, "model", "create", "from-git", str(repo), "--source", "git", "--format", "json")
    assert code == 0, err
    model = json.loads(out)
    stored = [p for p in plane.home.rglob("*") if model["id"] in p.parts]
    assert any(p.name == "predict.py" for p in stored), stored
    assert not any(".git" in p.parts for p in stored)
    assert model["size"] < sum(p.stat().st_size for p in repo.rglob("*") if p.is_file())
    assert run_cli(env, "model", "remove", "from-git")[0] == 0
