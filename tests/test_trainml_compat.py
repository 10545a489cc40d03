"""trainML scripts and SDK code, run unchanged against a real control plane on loopback.

The plane declares one RTX 3090 (`--gpus 0:rtx3090`, as on a machine without nvidia-smi), so trainML's own
examples, which ask for one, run here; nothing uses a real GPU. Every command is the real entry point, run as a
script runs it or in-process through CliRunner, with TRAINML_HOME and the API URL of this module's plane.
"""

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import ControlPlane, kill_everything_under, wait_until
from trainml_cli.cli.main import main

ROOT = Path(__file__).parent.parent
MODELS = Path(__file__).parent / "models"
ECHO = str(MODELS / "cli_echo")
ENVIRON = str(MODELS / "environ")
ECHO_ROUTE = json.dumps({"verb": "POST", "path": "/echo", "file": "predict", "function": "echo",
                         "body": [{"name": "text", "type": "str"}]})
GETENV_ROUTE = json.dumps({"verb": "POST", "path": "/getenv", "file": "predict", "function": "getenv",
                           "body": [{"name": "name", "type": "str"}]})


@pytest.fixture(scope="module")
def plane(tmp_path_factory):
    plane = ControlPlane(tmp_path_factory.mktemp("compat") / "home", ["--gpus", "0:rtx3090"]).start()
    yield plane
    plane.stop()
    kill_everything_under(plane.home)


@pytest.fixture(scope="module")
def env(plane, tmp_path_factory):
    # A HOME of its own: --credential looks for the user's files there.
    home = tmp_path_factory.mktemp("user")
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TRAINML_HOME": str(plane.home),
            "TRAINML_API_URL": plane.url, "NO_COLOR": "1", "HOME": str(home),
            "PYTHONPATH": os.environ.get("PYTHONPATH", "")}


def trainml(env, *argv, input=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "trainml_cli", *argv], capture_output=True, text=True, env=env,
                          input=input, timeout=timeout)


def run_cli(env, *argv, input=None):
    with CliRunner().isolation(env=env, input=input) as (out, err, _):
        code = main(list(argv))
    return code, out.getvalue().decode(), err.getvalue().decode()


def job_json(env, name):
    code, out, err = run_cli(env, "job", "get", name, "--format", "json")
    assert code == 0, err
    return json.loads(out)


def call(env, name, route, data):
    code, out, err = run_cli(env, "job", "call", name, route, "--data", json.dumps(data))
    assert code == 0, err
    return json.loads(out)


def test_trainml_short_options_create_a_running_endpoint(env):
    result = trainml(env, "job", "create", "endpoint", "short", "-gt", "cpu", "-cc", "1", "-ds", "10", "-mp", "1.0",
                     "--model-dir", ECHO, "--route", ECHO_ROUTE)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].startswith("Endpoint is running at:  http://127.0.0.1:")
    resources = job_json(env, "short")["resources"]
    assert (resources["gpu_types"], resources["cpu_count"], resources["disk_size"], resources["max_price"]) == \
        (["cpu"], 1, 10, 1.0)
    assert run_cli(env, "job", "remove", "--force", "short")[0] == 0


def test_trainml_gpu_type_names_and_gpu_list(env):
    code, out, _ = run_cli(env, "gpu", "list")
    assert code == 0
    row = next(line.split() for line in out.splitlines() if line.startswith("rtx3090 "))
    assert row[:4] == ["rtx3090", "0.35", "1", "1"]
    # trainML's display name, with its space, picks the declared GPU; it is then busy.
    code, out, err = run_cli(env, "job", "create", "endpoint", "gpu-job", "-gt", "RTX 3090", "-gc", "1",
                             "--model-dir", ENVIRON, "--route", GETENV_ROUTE)
    assert code == 0, err
    assert call(env, "gpu-job", "/getenv", {"name": "CUDA_VISIBLE_DEVICES"})["value"] == "0"
    code, out, _ = run_cli(env, "gpu", "list", "--format", "json")
    assert next(r for r in json.loads(out) if r["type"] == "rtx3090")["free"] == 0
    # More than the machine has is refused at once (exit 2, nothing created)...
    code, out, err = run_cli(env, "job", "create", "endpoint", "too-many", "-gt", "rtx3090", "-gc", "2",
                             "--model-dir", ENVIRON, "--route", GETENV_ROUTE)
    assert code == 2 and "asks for 2 GPU(s) of type rtx3090 but this machine has 1" in err
    # ... while one that is merely busy waits for it.
    code, out, err = run_cli(env, "job", "create", "endpoint", "waiter", "-gt", "rtx3090", "--model-dir", ENVIRON,
                             "--route", GETENV_ROUTE, "--no-connect")
    assert code == 0, err
    # --no-connect returns once the job is created: it unpacks its upload first, then waits for the GPU.
    wait_until(lambda: job_json(env, "waiter")["status"] == "waiting for resources", timeout=60, interval=0.2,
               message="the second GPU job to wait for the busy GPU")
    assert run_cli(env, "job", "remove", "--force", "gpu-job")[0] == 0
    code, out, err = run_cli(env, "job", "connect", "waiter", "--timeout", "60")
    assert code == 0, err
    assert run_cli(env, "job", "remove", "--force", "waiter")[0] == 0
    names = [j["name"] for j in json.loads(run_cli(env, "job", "list", "--format", "json")[1])]
    assert "too-many" not in names


def test_environment_list_answers(env):
    code, out, err = run_cli(env, "environment", "list")
    assert code == 0, err
    assert "Interpreters for --python:" in err


def test_trainml_cli_example_with_a_git_uri_a_commit_sha_and_a_positional_route(env, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    (repo / "predict.py").write_text("def predict(text):\n    return {'version': 1, 'text': text}\n")
    subprocess.run([*git, "-C", str(repo), "add", "."], check=True)
    subprocess.run([*git, "-C", str(repo), "commit", "-qm", "v1"], check=True)
    first = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    (repo / "predict.py").write_text("def predict(text):\n    return {'version': 2, 'text': text}\n")
    subprocess.run([*git, "-C", str(repo), "commit", "-qam", "v2"], check=True)
    route = json.dumps({"verb": "POST", "path": "/predict", "file": "predict", "function": "predict",
                        "positional": True, "body": [{"name": "text", "type": "str"}]})
    for name, ref, version in (("git-head", None, 2), ("git-sha", first, 1), ("git-short", first[:8], 1)):
        extra = ["--git-ref", ref] if ref else []
        result = trainml(env, "job", "create", "endpoint", name, "-gt", "cpu", "--git-uri", str(repo), *extra,
                         "--route", route)
        assert result.returncode == 0, result.stderr
        assert call(env, name, "/predict", {"text": "hi"}) == {"version": version, "text": "hi"}
        assert run_cli(env, "job", "remove", "--force", name)[0] == 0
    # A branch whose name looks like a commit is still found.
    subprocess.run(["git", "-C", str(repo), "branch", "cafe1234", first], check=True)
    assert trainml(env, "job", "create", "endpoint", "git-hexbranch", "--git-uri", str(repo), "--git-ref", "cafe1234",
                   "--route", route).returncode == 0
    assert call(env, "git-hexbranch", "/predict", {"text": "x"})["version"] == 1
    assert run_cli(env, "job", "remove", "--force", "git-hexbranch")[0] == 0
    code, _, err = run_cli(env, "job", "create", "endpoint", "git-bad", "--git-uri", str(repo),
                           "--git-ref", "deadbeef1", "--route", route)
    assert code == 1 and "commit deadbeef1 not found" in err


def test_model_create_name_path_source_rename_and_use(env, tmp_path):
    code, out, err = run_cli(env, "model", "create", "m-local", ECHO)
    assert code == 0, err
    assert out.startswith("Created model m-local (")
    code, out, err = run_cli(env, "model", "create", "m-bad", str(tmp_path / "nothing"), "--source", "local")
    assert code == 2 and "is not a folder" in err
    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "predict.py").write_text("def echo(text):\n    return {'echo': text}\n")
    subprocess.run(["git", "-C", str(repo), "add", "."], check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@e", "-C", str(repo), "commit", "-qm", "x"],
                   check=True)
    code, out, err = run_cli(env, "model", "create", "m-git", repo.as_uri(), "--source", "git")
    assert code == 0, err
    assert run_cli(env, "model", "rename", "m-local", "m-renamed")[0] == 0
    code, out, err = run_cli(env, "model", "rename", "m-git", "m-renamed")
    assert code == 1 and "already exists" in err
    code, out, err = run_cli(env, "job", "create", "endpoint", "from-model", "--model-id", "m-renamed",
                             "--route", ECHO_ROUTE)
    assert code == 0, err
    assert call(env, "from-model", "/echo", {"text": "a"}) == {"echo": "a"}
    assert run_cli(env, "job", "remove", "--force", "from-model")[0] == 0
    for name in ("m-renamed", "m-git"):
        assert run_cli(env, "model", "remove", name)[0] == 0


def test_trainml_model_upload_steps_run_unchanged(env):
    """trainML's scripts create a local model without uploading, then connect, attach and disconnect."""
    code, out, err = run_cli(env, "model", "create", "m-steps", ECHO, "--no-connect", "--no-attach")
    assert code == 0, err
    assert out.startswith("Created model m-steps (")
    for step in ("connect", "attach", "disconnect"):
        code, out, err = run_cli(env, "model", step, "m-steps")
        assert code == 0, err
        assert out.startswith("Model m-steps (") and "is stored" in out and "from local" in out, (step, out)
    code, out, err = run_cli(env, "model", "attach", "no-such-model")
    assert code != 0 and "no-such-model" in err and "Traceback" not in err
    code, out, err = run_cli(env, "job", "create", "endpoint", "from-steps", "--model-id", "m-steps",
                             "--route", ECHO_ROUTE)
    assert code == 0, err
    assert call(env, "from-steps", "/echo", {"text": "b"}) == {"echo": "b"}
    assert run_cli(env, "job", "remove", "--force", "from-steps")[0] == 0
    assert run_cli(env, "model", "remove", "m-steps")[0] == 0


def test_readme_env_threshold_example_changes_what_the_example_model_answers(env):
    sentiment = str(ROOT / "examples" / "sentiment")
    assert run_cli(env, "model", "create", "sentiment-v1", sentiment)[0] == 0
    routes = str(ROOT / "examples" / "sentiment" / "routes.json")
    for name, extra in (("s-default", []), ("s-strict", ["--env", "THRESHOLD=100"])):
        code, _, err = run_cli(env, "job", "create", "endpoint", name, "--model-id", "sentiment-v1",
                               "--route-file", routes, *extra)
        assert code == 0, err
    assert call(env, "s-default", "/predict", {"text": "I loved this movie"})["label"] == "positive"
    assert call(env, "s-strict", "/predict", {"text": "I loved this movie"})["label"] == "neutral"
    assert call(env, "s-strict", "/predict", {"text": "I loved this movie", "threshold": 0})["label"] == "positive"
    for name in ("s-default", "s-strict"):
        assert run_cli(env, "job", "remove", "--force", name)[0] == 0
    assert run_cli(env, "model", "remove", "sentiment-v1")[0] == 0


def test_secret_is_injected_and_never_shown(env, plane):
    value = "s3cr3t-value-9f2"
    result = trainml(env, "secret", "create", "API_KEY", input=value + "\n")
    assert result.returncode == 0, result.stderr
    stored = plane.home / "secrets" / "API_KEY"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600 and stored.read_text() == value
    code, out, err = run_cli(env, "job", "create", "endpoint", "with-secret", "--secret", "API_KEY",
                             "--model-dir", ENVIRON, "--route", GETENV_ROUTE)
    assert code == 0, err
    assert call(env, "with-secret", "/getenv", {"name": "API_KEY"})["value"] == value
    shown = [run_cli(env, *argv)[1] for argv in (
        ("job", "get", "with-secret", "--format", "json"), ("-vv", "job", "get", "with-secret"),
        ("job", "list", "--format", "json"), ("job", "logs", "with-secret"), ("secret", "list", "--format", "json"))]
    assert all(value not in text for text in shown)
    assert "API_KEY" in shown[1] and "API_KEY" in shown[4]
    shown_id = json.loads(shown[0])["id"]
    code, _, err = run_cli(env, "job", "create", "endpoint", "no-secret", "--secret", "MISSING_ONE",
                           "--model-dir", ENVIRON, "--route", GETENV_ROUTE)
    assert code == 2 and "no secret named 'MISSING_ONE'" in err
    # --format json on what changes things too: data a script reads, never the value.
    code, out, err = run_cli(env, "secret", "create", "OTHER_KEY", "--format", "json", input="v-9f3\n")
    assert code == 0 and json.loads(out)["name"] == "OTHER_KEY" and "v-9f3" not in out + err, err
    code, out, err = run_cli(env, "job", "remove", "--force", "with-secret", "--format", "json")
    assert code == 0 and json.loads(out) == {"id": shown_id, "name": "with-secret", "removed": True}, err
    assert run_cli(env, "secret", "remove", "API_KEY")[0] == 0
    code, out, _ = run_cli(env, "secret", "remove", "OTHER_KEY", "-f", "json")
    assert code == 0 and json.loads(out) == {"name": "OTHER_KEY", "removed": True}


def test_credentials_from_local_files_or_exit_2(env):
    code, _, err = run_cli(env, "job", "create", "endpoint", "creds", "--credential", "aws", "--model-dir", ENVIRON,
                           "--route", GETENV_ROUTE)
    assert code == 2 and "--credential aws: no aws credentials found at ~/.aws/credentials" in err
    aws = Path(env["HOME"]) / ".aws"
    aws.mkdir(exist_ok=True)
    (aws / "credentials").write_text("[default]\naws_access_key_id = AKIAEXAMPLE\n")
    code, _, err = run_cli(env, "job", "create", "endpoint", "creds", "--credential", "aws", "--model-dir", ENVIRON,
                           "--route", GETENV_ROUTE)
    assert code == 0, err
    assert call(env, "creds", "/getenv", {"name": "AWS_SHARED_CREDENTIALS_FILE"})["value"] == str(aws / "credentials")
    assert run_cli(env, "job", "remove", "--force", "creds")[0] == 0


@pytest.mark.parametrize("option", ["--checkpoint", "--public-checkpoint"])
def test_checkpoints_are_refused_with_exit_2(env, option):
    code, out, err = run_cli(env, "job", "create", "endpoint", "ckpt", option, "my-ckpt", "--model-dir", ECHO,
                             "--route", ECHO_ROUTE)
    assert (code, out) == (2, "")
    assert "checkpoints are not supported" in err


def test_trainml_sdk_example_runs_with_only_the_import_changed(env):
    source = (ROOT / "examples" / "trainml_sdk" / "endpoint.py").read_text()
    # The import is the only line that names this package: the rest is trainML's SDK code as it is.
    assert [line for line in source.splitlines() if re.search(r"\btrainml_cli\b", line)] == [
        "from trainml_cli import TrainML"]
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "trainml_sdk" / "endpoint.py")],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].endswith("Endpoint Example new")
    assert lines[1].startswith("Endpoint is running at: http://127.0.0.1:")
    assert lines[2] == "{'label': 'positive', 'score': 1.8}" or "'label': 'positive'" in lines[2]
    assert lines[3] == "running"
    assert "Endpoint Example" not in run_cli(env, "job", "list")[1]  # removed


def test_sdk_trainml_signature_and_job_methods(plane):
    import asyncio

    from trainml_cli import JobStatus, TrainML, UsageError

    async def scenario():
        async with TrainML(settings=plane.settings) as client:
            job = await client.jobs.create(
                "sdk-sig", "endpoint", gpu_types=["cpu"], gpu_count=0, cpu_count=1, disk_size=5, max_price=2.5,
                environment=dict(env=[dict(key="X", value="1")]),  # a type would build its framework
                model=dict(source_type="local", source_uri=ECHO, checkpoints=[]),
                endpoint=dict(routes=[json.loads(ECHO_ROUTE)]), data=dict(datasets=[]), workers=[])
            assert (job.dict["resources"]["disk_size"], job.dict["resources"]["max_price"]) == (5, 2.5)
            url = await job.connect()
            assert url == job.url and job.status == JobStatus.RUNNING
            assert [j.name for j in await client.jobs.list()].count("sdk-sig") == 1
            assert (await client.jobs.get("sdk-sig")).id == job.id
            with pytest.raises(UsageError, match="data: \\['datasets'\\] is not supported"):
                await client.jobs.create("x", "endpoint", model=dict(source_type="local", source_uri=ECHO),
                                         endpoint=dict(routes=[json.loads(ECHO_ROUTE)]), data=dict(datasets=["d"]))
            await job.stop()
            assert job.status == "stopped"
            await job.start()
            await job.wait_for("running", 60)
            lines = []
            attached = asyncio.create_task(job.attach(callback=lines.append))
            await asyncio.sleep(1)
            await client.jobs.remove("sdk-sig", force=True)
            await asyncio.wait_for(attached, 30)
            assert any("cli_echo model loaded" in entry["message"] for entry in lines)

    asyncio.run(scenario())


def test_trainml_style_sdk_program_runs_with_only_the_imports_changed(env, plane):
    # trainML's form of the URL: a host and port, no scheme.
    script_env = {**env, "TRAINML_API_URL": plane.url.split("://", 1)[1]}
    result = subprocess.run([sys.executable, str(ROOT / "tests" / "trainml_sdk_script.py"), ECHO, ECHO_ROUTE],
                            capture_output=True, text=True, env=script_env, timeout=240)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "model ready",
        "type endpoint",
        "download reached",
        "running running",
        "str trainml-style-endpoint",
        "stop returns the job True stopped",
        "message keys msg,stream,time,type,worker_number",
        "message types int",
        "start returns the job True",
        "environments list Deep Learning - Python 3.9 3.9",
        "gpu types rtx3090:0.35",
        "job archived",
        "model archived",
    ]
    # trainML's account arguments mean nothing here: said once, in one line, not an error.
    warnings = [line for line in result.stderr.splitlines() if "TrainML():" in line]
    assert len(warnings) == 1 and "user, key, project mean nothing for a self-hosted control plane" in warnings[0]


TRAINML_SCRIPT = r"""
set -euo pipefail
trainml() { "$PYTHON" -m trainml_cli "$@"; }
trainml configure
trainml model create flags-model -s local "$MODEL"
trainml model create flags-model-2 "$MODEL" --source LOCAL
trainml model list -f json | "$PYTHON" -c 'import json, sys; print("models", len(json.load(sys.stdin)))'
url=$(trainml job create endpoint flags-job --model-dir "$MODEL" --route "$ROUTE" | tail -1 | awk '{print $NF}')
curl -sf -X POST "$url/echo" -H 'Content-Type: application/json' -d '{"text": "hi"}'; echo
trainml job list --format JSON \
  | "$PYTHON" -c 'import json, sys; print("jobs", "flags-job" in [j["name"] for j in json.load(sys.stdin)])'
trainml job connect --no-attach flags-job | tail -1 | sed "s|$url|URL|"
trainml job stop flags-job
trainml job remove --no-force flags-job
trainml model remove --force flags-model
trainml model remove --no-force flags-model-2
"""


def test_trainml_style_shell_script_with_trainmls_flags(env, plane, tmp_path):
    script = tmp_path / "endpoint.sh"
    script.write_text(TRAINML_SCRIPT)
    script_env = {**env, "TRAINML_API_URL": plane.url.split("://", 1)[1], "PYTHON": sys.executable,
                  "MODEL": ECHO, "ROUTE": ECHO_ROUTE}
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=script_env, timeout=240)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Nothing to configure: a self-hosted control plane has no accounts or projects.")
    assert lines[1].startswith("Created model flags-model (") and lines[2].startswith("Created model flags-model-2 (")
    assert lines[3:] == ["models 2", '{"echo":"hi"}', "jobs True", "Endpoint is running at:  URL",
                         "Job flags-job stopped.", "Removed job flags-job.", "Removed model flags-model.",
                         "Removed model flags-model-2."]
