"""Rough edges a new user met, each fixed and held here: quoting in hints, names that hide ids, wide characters,
JSON on failure, non-finite numbers, messages (one per field, one for empty route files, the verb hint), -v,
Ctrl-C, ambiguous names, and an --api-url that is not a control plane.
"""

import http.server
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from conftest import ControlPlane, default_sigint, kill_everything_under
from trainml_cli.cli.main import main
from trainml_cli.cli.output import Output, cell_width
from trainml_cli.errors import UsageError
from trainml_cli.sdk.jobs import Job

MODELS = Path(__file__).parent / "models"
ECHO = str(MODELS / "cli_echo")
ROUTE = json.dumps({"verb": "POST", "path": "/echo", "file": "predict", "function": "echo",
                    "body": [{"name": "text", "type": "str"}]})
NOWHERE = "http://127.0.0.1:9"


@pytest.fixture(scope="module")
def plane(tmp_path_factory):
    plane = ControlPlane(tmp_path_factory.mktemp("edges") / "home").start()
    yield plane
    plane.stop()
    kill_everything_under(plane.home)


@pytest.fixture(scope="module")
def env(plane):
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TRAINML_HOME": str(plane.home),
            "TRAINML_API_URL": plane.url, "NO_COLOR": "1", "PYTHONPATH": os.environ.get("PYTHONPATH", "")}


def run_cli(env, *argv, input=None):
    with CliRunner().isolation(env=env, input=input) as (out, err, _):
        code = main(list(argv))
    return code, out.getvalue().decode(), err.getvalue().decode()


def offline(*argv, tmp_home):
    return run_cli({"TRAINML_API_URL": NOWHERE, "TRAINML_HOME": str(tmp_home), "NO_COLOR": "1"}, *argv)


# -- hints ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, quoted", [("my model", "'my model'"), ("-dash", "-- -dash")])
def test_hints_quote_names_for_the_shell_and_run_as_printed(env, name, quoted):
    code, out, err = run_cli(env, "job", "create", "endpoint", "--model-dir", ECHO, "--route", ROUTE,
                             "--no-connect", "--", name)
    assert code == 0, err
    hint = f"trainml job connect {quoted}"
    assert f"`{hint}`" in err
    code, out, err = run_cli(env, *shlex.split(hint)[1:])  # pasted into a shell, it works
    assert code == 0, err
    assert out.splitlines()[-1].startswith("Endpoint is running at:  ")
    assert run_cli(env, *shlex.split(f"trainml job remove --force {quoted}")[1:])[0] == 0


def test_a_name_equal_to_another_jobs_id_is_refused(env):
    code, out, _ = run_cli(env, "job", "create", "endpoint", "first", "--model-dir", ECHO, "--route", ROUTE,
                           "--no-connect", "--format", "json")
    first = json.loads(out)["id"]
    code, out, err = run_cli(env, "job", "create", "endpoint", first, "--model-dir", ECHO, "--route", ROUTE)
    assert code == 1 and f"job name {first!r} is another job's id; choose another name" in err
    assert run_cli(env, "job", "get", first)[0] == 0  # still reachable, and by name too
    assert run_cli(env, "job", "remove", "--force", "first")[0] == 0


def test_ambiguous_name_exits_2_listing_the_ids(env):
    ids = [json.loads(run_cli(env, "job", "create", "endpoint", "twin2", "--model-dir", ECHO, "--route", ROUTE,
                              "--no-connect", "--format", "json")[1])["id"] for _ in range(2)]
    code, _, err = run_cli(env, "job", "get", "twin2")
    assert code == 2 and all(i in err for i in ids)
    for job_id in ids:
        assert run_cli(env, "job", "remove", "--force", job_id)[0] == 0


# -- output -----------------------------------------------------------------------------------------------------


def test_job_list_columns_stay_aligned_with_wide_characters(capsys):
    names = ["modèle-情感", "mode\u0300le", "smile-😀", "plain"]
    Output(SimpleNamespace(silent=False, verbose=0, output_file=None)).table(
        ["ID", "NAME", "STATUS"], [(f"j{i}", name, "running") for i, name in enumerate(names)])
    lines = capsys.readouterr().out.splitlines()
    starts = [cell_width(line[:line.index("running" if "running" in line else "STATUS")]) for line in lines]
    assert len(set(starts)) == 1, lines
    assert cell_width("情感") == 4 and cell_width("e\u0300") == 1


def test_verbose_adds_resources_then_model_and_rate(env):
    assert run_cli(env, "job", "create", "endpoint", "verbose", "--model-dir", ECHO, "--route", ROUTE)[0] == 0
    plain = run_cli(env, "job", "list")[1].splitlines()[0].split()
    once = run_cli(env, "-v", "job", "list")[1].splitlines()[0].split()
    twice = run_cli(env, "-vv", "job", "list")[1].splitlines()[0].split()
    assert plain == ["ID", "NAME", "STATUS", "URL"]
    assert once == plain + ["RESOURCES", "CREATED"] and twice == once + ["MODEL", "RATE"]
    detail = run_cli(env, "-v", "job", "get", "verbose")[1]
    assert "Hourly rate:" in detail and "PID:" in detail
    assert "Hourly rate:" not in run_cli(env, "job", "get", "verbose")[1]
    assert run_cli(env, "job", "remove", "--force", "verbose")[0] == 0


def test_json_create_of_a_failing_job_prints_its_record_and_exits_1(env):
    route = json.dumps({"verb": "POST", "path": "/p", "file": "predict", "function": "predict"})
    code, out, err = run_cli(env, "job", "create", "endpoint", "fails-json", "--model-dir", str(MODELS / "cli_fails"),
                             "--route", route, "--format", "json")
    assert code == 1
    record = json.loads(out)
    assert record["name"] == "fails-json" and record["status"] == "failed" and "cli_fails" in record["reason"]
    assert "Error: job fails-json failed" in err
    assert run_cli(env, "job", "remove", "fails-json")[0] == 0


# -- input ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e999"])
def test_non_finite_numbers_are_usage_errors(tmp_path, value):
    code, out, err = offline("job", "create", "endpoint", "x", "--model-dir", ECHO, "--route", ROUTE,
                             "--call-timeout", value, tmp_home=tmp_path)
    assert (code, out) == (2, "")
    assert f"Invalid value for '--call-timeout': {value!r} is not a finite number" in err


def test_one_message_per_field(tmp_path):
    code, _, err = offline("job", "create", "endpoint", "x", "--model-dir", ECHO, "--route",
                           json.dumps({"verb": 5, "path": "/p", "file": "predict", "function": "echo"}),
                           tmp_home=tmp_path)
    assert code == 2
    assert err.count("verb:") == 1


@pytest.mark.parametrize("filename, content", [("r.json", ""), ("r.yaml", ""), ("r.json", "[]"), ("r.yml", "[]")])
def test_empty_route_files_hold_no_routes_with_one_banner(tmp_path, filename, content):
    path = tmp_path / filename
    path.write_text(content)
    code, out, err = offline("job", "create", "endpoint", "x", "--model-dir", ECHO, "--route-file", str(path),
                             tmp_home=tmp_path)
    assert (code, out) == (2, "")
    assert err.startswith("Usage: trainml job create endpoint")
    assert err.rstrip().endswith(f"Error: route file {path} holds no routes")


def test_several_verbs_hint_names_one_of_the_routes_verbs():
    routes = [{"verb": verb, "path": "/x", "file": "predict", "function": "f"} for verb in ("GET", "PUT")]
    job = Job(None, {"id": "j", "name": "n", "status": "running", "endpoint": {"routes": routes}})
    with pytest.raises(UsageError, match=r"/x has several verbs \(GET, PUT\); give one, e.g. 'GET /x'"):
        job._route("/x", None)


# -- signals and the control plane ----------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [["job", "logs", "-f"], ["job", "attach"]])
def test_ctrl_c_says_interrupted_for_logs_and_attach(env, argv):
    if "ctrlc" not in run_cli(env, "job", "list")[1]:
        assert run_cli(env, "job", "create", "endpoint", "ctrlc", "--model-dir", ECHO, "--route", ROUTE)[0] == 0
    following = subprocess.Popen([sys.executable, "-m", "trainml_cli", *argv, "ctrlc"], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 preexec_fn=default_sigint)
    try:
        time.sleep(2)
        following.send_signal(signal.SIGINT)
        _, err = following.communicate(timeout=15)
    finally:
        following.kill()
    assert following.returncode == 130
    assert err.strip().splitlines()[-1] == "Interrupted."


def test_an_api_url_that_is_not_a_control_plane_says_so(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        code, out, err = run_cli({"TRAINML_HOME": str(tmp_path), "NO_COLOR": "1"}, "--api-url", url, "job", "list")
    finally:
        server.shutdown()
    assert (code, out) == (1, "")
    assert f"Error: {url} did not answer like a trainml control plane (HTTP 404" in err


def test_an_api_url_whose_host_does_not_resolve_says_so(tmp_path):
    started = time.monotonic()
    code, _, err = run_cli({"TRAINML_HOME": str(tmp_path), "NO_COLOR": "1"}, "--api-url",
                           "http://no-such-host.invalid:8080", "job", "list")
    assert code == 1 and "Error: cannot resolve no-such-host.invalid" in err
    assert time.monotonic() - started < 20  # no retries for a name that will not resolve


def test_server_options_are_defined_once_for_click_argparse_and_restart(tmp_path):
    from trainml_cli.server.__main__ import build_parser
    from trainml_cli.serveroptions import OPTIONS, option_fields, resolve
    from trainml_cli.settings import Settings

    code, out, err = offline("--home", str(tmp_path), "server", "install", "--print", "--stop-grace", "2.5",
                             "--gpus", "0:rtx3090", "--unresponsive-after", "7", tmp_home=tmp_path)
    assert code == 0, err
    command = shlex.split(next(line for line in out.splitlines() if line.startswith("ExecStart=")))
    argv = command[command.index("trainml_cli.server") + 1:]
    given = vars(build_parser().parse_args(argv))
    assert given == {"home": str(tmp_path), "log_level": "info"}  # the options are the saved ones
    _chosen, values = resolve(Settings(home=tmp_path), {})  # what the unit starts reads back what was asked
    assert (values["stop_grace"], values["gpus"], values["unresponsive_after"], values["port"]) == \
        (2.5, "0:rtx3090", 7.0, 0)
    for command in ("run", "start", "restart", "install"):
        code, out, _ = offline("server", command, "--help", tmp_home=tmp_path)
        assert all(option.flag in out for option in OPTIONS), command
    assert option_fields() == ["gpus", "python", "stop_grace", "unresponsive_after", "pass_env", "max_connections",
                               "tls_certfile", "tls_keyfile",
                               "backend", "ray_address", "ray_token_file", "ray_serve_host", "ray_serve_port",
                               "otlp_endpoint", "ray_deploy_timeout"]


def test_short_debug_flag_shows_the_traceback_but_job_call_d_is_data(env):
    code, _, err = run_cli(env, "-d", "job", "get", "no-such-job-d")
    assert code == 1 and "Traceback (most recent call last)" in err
    code, _, err = run_cli(env, "job", "call", "no-such-job-d", "/p", "-d", "{}")
    assert code == 1 and "Traceback" not in err
