"""Usage errors that need no control plane, through click's CliRunner: exit 2, nothing on stdout, no traceback, and
one line naming the option and what is wrong. The control plane's URL is a closed port and the home a new folder
(see the `cli` fixture): a command that sent anything would exit 1, and the folder would exist."""

from __future__ import annotations

import json

import pytest

from .conftest import MODELS

ECHO = str(MODELS / "cli_echo")
ROUTE = json.dumps({"verb": "POST", "path": "/e", "file": "predict", "function": "echo",
                    "body": [{"name": "text", "type": "str"}]})
CREATE = ["job", "create", "endpoint", "x", "--model-dir", ECHO, "--route", ROUTE]

CASES = [
    (["job", "create", "endpoint", "x", "--zzz"], "No such option '--zzz'."),
    (["job", "create", "endpoint"], "Missing argument 'NAME'."),
    (["job", "get"], "Missing argument 'JOB'."),
    ([*CREATE, "--cpu-count", "0"], "Invalid value for '-cc' / '--cpu-count': 0 is not in the range x>=1."),
    ([*CREATE, "--max-queue", "-1"], "Invalid value for '--max-queue': -1 is not in the range x>=0."),
    ([*CREATE, "--max-concurrency", "100000"],
     "Invalid value for '--max-concurrency': 100000 is more than 1,024 (threads per worker)"),
    ([*CREATE, "--replicas", "2", "--max-replicas", "3"],
     "--replicas: give either --replicas (a fixed number) or --min-replicas/--max-replicas (autoscaling), not both"),
    ([*CREATE, "--min-replicas", "3", "--max-replicas", "2"], "--min-replicas: 3 is more than --max-replicas (2)"),
    ([*CREATE, "--upscale-delay", "5"], "--upscale-delay: an autoscaling setting: give --min-replicas and/or "
                                        "--max-replicas too (a fixed number of replicas is never scaled)"),
    ([*CREATE, "--max-replicas", "2", "--target-ongoing", "0"],
     "Invalid value for '--target-ongoing': '0' must be above 0"),
    ([*CREATE, "--ray-actor-options", '{"num_cpus": 1}'],
     "Invalid value for '--ray-actor-options': num_cpus: give --cpu-count (resources.cpu_count): CPUs per replica"),
    ([*CREATE, "--ray-actor-options", '{"memory": 0}'], "Invalid value for '--ray-actor-options': memory: 0 must be a "
                                                        "number of bytes above 0 (e.g. 2147483648 for 2 GiB)"),
    ([*CREATE, "--ray-actor-options", "nope"],
     "Invalid value for '--ray-actor-options': not JSON: Expecting value: line 1 column 1 (char 0)"),
    ([*CREATE, "--secret", "1BAD"], "Invalid value for '--secret': '1BAD' is not a secret name: letters, digits and _, "
                                    "not starting with a digit"),
    (["secret", "create", "1BAD"], "Invalid value for 'NAME': '1BAD' is not a secret name: letters, digits and _, not "
                                   "starting with a digit"),
    (["job", "call", "x", "/e", "--data", "@/nonexistent/none.json"],
     "Invalid value for '-d' / '--data': /nonexistent/none.json: No such file or directory"),
    (["job", "update", "x", "--strategy", "sideways"],
     "Invalid value for '--strategy': 'sideways' is not one of 'blue-green', 'recreate'."),
    (["job", "rollback", "x", "--strategy", "sideways"],
     "Invalid value for '--strategy': 'sideways' is not one of 'blue-green', 'recreate'."),
    (["job", "update", "x", "--gpu-count", "-1"], "Invalid value for '-gc' / '--gpu-count': '-1' must be at least 0"),
    (["job", "list", "--format", "xml"], "Invalid value for '-f' / '--format': 'xml' is not one of 'text', 'json'."),
    (["--api-url", "ftp://localhost:1", "job", "list"],
     "Invalid value for '--api-url': 'ftp://localhost:1' must start with http:// or https:// (or be a host[:port], "
     "as trainML's)"),
    (["endpoint", "serve", "--model-dir", ECHO], "give at least one --route or a --route-file"),
    (["endpoint", "serve", "--model-dir", ECHO, "--route", ROUTE, "--workers", "0"],
     "Invalid value for '--workers': 0 is not in the range x>=1."),
    (["endpoint", "serve", "--model-dir", "/nonexistent", "--route", ROUTE],
     "Invalid value for '--model-dir': Directory '/nonexistent' does not exist."),
    (["server", "run", "--port", "abc"], "Invalid value for '--port': 'abc' is not a valid integer range."),
    (["server", "run", "--backend", "nope"], "Invalid value for '--backend': 'nope' is not one of 'local', 'ray'."),
    (["server", "run", "--tls-certfile", "/nonexistent"],
     "Invalid value for '--tls-certfile': File '/nonexistent' does not exist."),
]


@pytest.mark.parametrize("argv, message", CASES, ids=[" ".join(a[:3]) + f" #{i}" for i, (a, _) in enumerate(CASES)])
def test_a_usage_error_exits_2_with_one_line_naming_the_problem(cli, tmp_path, argv, message):
    code, out, err = cli(*argv)
    assert code == 2, err
    assert out == ""
    assert "Traceback" not in err
    assert err.rstrip().splitlines()[-1] == f"Error: {message}"
    assert not (tmp_path / "home").exists()  # nothing was started or written


def test_a_click_usage_error_shows_the_commands_usage_and_where_to_get_help(cli):
    code, _, err = cli("job", "create", "endpoint", "x", "--bogus")
    assert code == 2
    assert err.splitlines()[:2] == ["Usage: trainml job create endpoint [OPTIONS] NAME",
                                    "Try 'trainml job create endpoint --help' for help."]


def test_every_problem_of_a_route_is_one_line_each(cli):
    code, _, err = cli("endpoint", "serve", "--model-dir", ECHO, "--route", '{"verb": "POST", "path": "/e"}')
    assert code == 2 and "Traceback" not in err
    assert err.rstrip().splitlines()[-2:] == ["Error: route 1 (POST /e): file: is required",
                                              "route 1 (POST /e): function: is required"]


def test_help_is_exit_0_and_lists_the_commands(cli):
    code, out, _ = cli("--help")
    assert code == 0
    for command in ("job", "model", "secret", "server", "endpoint"):
        assert f"  {command} " in out


# Ray's replica options and the autoscaling settings at `job create`, each a process of its own once
# (tests/test_ray_backend.py); the answer is click's, before anything is sent.
SCALING = [
    (["--ray-actor-options", '{"memroy": 1}'], "memroy: not one of Ray Serve's replica options taken here: memory,"),
    (["--ray-actor-options", '{"num_gpus": 1}'], "num_gpus: give --gpu-count"),
    (["--ray-actor-options", "{memory: 1}"], "not JSON"),
    (["--min-replicas", "1", "--upscale-delay", "-5"], "'--upscale-delay': '-5' must be at least 0"),
    (["--min-replicas", "1", "--downscale-delay", "1e9"], "--downscale-delay: 1e+09 must be between 0 and 86400"),
    (["--upscale-delay", "5"], "--upscale-delay: an autoscaling setting: give --min-replicas and/or --max-replicas"),
    (["--min-replicas", "1", "--target-ongoing", "20"], "--target-ongoing: 20 is more than --max-concurrency (8)"),
]


@pytest.mark.parametrize("options, words", SCALING)
def test_bad_scaling_settings_and_actor_options_exit_2_at_the_cli(cli, tmp_path, options, words):
    route = {"verb": "POST", "path": "/predict", "file": "predict", "function": "predict",
             "body": [{"name": "text", "type": "str"}]}
    code, _, err = cli("job", "create", "endpoint", "x", "--model-dir", str(MODELS / "echo"), "--route",
                       json.dumps(route), *options)
    assert code == 2 and words in err, err
    assert "Traceback" not in err and not (tmp_path / "home" / "server.json").exists(), "nothing was started"
