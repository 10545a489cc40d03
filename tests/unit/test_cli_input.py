"""Bad input exits 2 with one clear message and never reaches a server.

TRAINML_API_URL points at a closed loopback port: had any of these commands sent a request, it would have failed
with exit 1 (server unreachable), not 2. The tests against a real server also check no job is left behind.
"""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from trainml_cli.cli.main import main

MODELS = Path(__file__).parent.parent / "models"
ECHO = str(MODELS / "cli_echo")
ROUTE = json.dumps({"verb": "POST", "path": "/echo", "file": "predict", "function": "echo",
                    "body": [{"name": "text", "type": "str"}]})
NOWHERE = "http://127.0.0.1:9"  # discard port: nothing listens


def run_cli(*argv, env=None, input=None):
    """main(argv) as the console script runs it: (exit code, stdout, stderr)."""
    runner = CliRunner()
    env = {"TRAINML_API_URL": NOWHERE, "NO_COLOR": "1", **(env or {})}
    with runner.isolation(input=input, env=env) as (out, err, _):
        code = main(list(argv))
    return code, out.getvalue().decode(), err.getvalue().decode()


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINML_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def create(*extra):
    return run_cli("job", "create", "endpoint", "demo", *extra)


def test_bad_route_json_shows_the_text_and_where_it_broke():
    code, out, err = create("--model-dir", ECHO, "--route", ROUTE, "--route", '{"verb": "POST", "path": /x}')
    assert code == 2
    assert out == ""
    assert "route 2: not valid JSON: Expecting value at line 1 column 26" in err
    lines = err.splitlines()
    text_line = next(i for i, line in enumerate(lines) if line.strip() == '{"verb": "POST", "path": /x}')
    assert lines[text_line + 1].index("^") == lines[text_line].index("/x")


def test_route_that_is_not_an_object():
    code, _, err = create("--model-dir", ECHO, "--route", "[1, 2]")
    assert code == 2
    assert "route 1: must be a JSON object, got list" in err


@pytest.mark.parametrize(
    "route, message",
    [
        ({"verb": "POST", "path": "/p", "file": "predict", "function": "echo",
          "body": [{"name": "t", "type": "string"}]},
         "route 1 (POST /p): body[0].type: 'string' is not one of str, int, float, bool, dict, list, file"),
        ({"verb": "POST", "path": "/p", "file": "predict"}, "route 1 (POST /p): function: is required"),
        ({"verb": "FETCH", "path": "/p", "file": "predict", "function": "echo"},
         "route 1 (FETCH /p): verb: 'FETCH' is not one of GET, POST, PUT, PATCH, DELETE"),
        ({"verb": "POST", "path": "/ping", "file": "predict", "function": "echo"},
         "route 1 (POST /ping): path: /ping is reserved"),
        ({"verb": "POST", "path": "/p", "file": "predict", "function": "echo",
          "body": [{"name": "n", "type": "int", "default_value": "1"}]},
         "route 1 (POST /p): body[0].default_value: only optional params take a default"),
        ({"verb": "POST", "path": "/p", "file": "predict", "function": "echo",
          "body": [{"name": "xs", "type": "list", "items": "complex"}]},
         "route 1 (POST /p): body[0].items: 'complex' is not one of str, int, float, bool, dict"),
        ({"verb": "POST", "path": "/p", "file": "predict", "function": "echo",
          "body": [{"name": "size", "type": "str", "optional": True, "default_value": "'huge'",
                    "choices": ["small", "large"]}]},
         "route 1 (POST /p): body[0].default_value: \"'huge'\" is not one of the choices 'small', 'large'"),
        ({"verb": "POST", "path": "/p", "file": "predict", "function": "echo", "content_type": "png"},
         "route 1 (POST /p): content_type: 'png' is not a media type like image/png"),
    ],
    ids=["bad-type", "missing-function", "bad-verb", "reserved-path", "default-not-optional", "unknown-items",
         "default-not-a-choice", "bad-content-type"],
)
def test_schema_errors_name_the_route_and_field(route, message):
    code, out, err = create("--model-dir", ECHO, "--route", json.dumps(route))
    assert code == 2
    assert out == ""
    assert err.startswith("Error: ")
    assert message in err


def test_every_problem_of_every_route_is_listed_once():
    bad = {"verb": "POST", "path": "/p", "file": "predict", "function": "echo", "body": [{"name": "t", "type": "x"}]}
    also_bad = {"verb": "GET", "path": "/q", "file": "predict"}
    code, _, err = create("--model-dir", ECHO, "--route", json.dumps(bad), "--route", json.dumps(also_bad))
    assert code == 2
    assert "route 1 (POST /p): body[0].type" in err
    assert "route 2 (GET /q): function: is required" in err


def test_route_file_routes_are_checked_too(tmp_path):
    routes = tmp_path / "routes.yaml"
    routes.write_text("- verb: POST\n  path: /echo\n  file: predict\n  function: echo\n"
                      "  body:\n    - name: t\n      type: text\n")
    code, _, err = create("--model-dir", ECHO, "--route-file", str(routes))
    assert code == 2
    assert "route 1 (POST /echo): body[0].type: 'text' is not one of" in err


def test_a_route_file_that_is_missing_from_the_model_dir():
    route = json.dumps({"verb": "POST", "path": "/p", "file": "nothere", "function": "f"})
    code, _, err = create("--model-dir", ECHO, "--route", route)
    assert code == 2
    assert "route 1 (POST /p): file: 'nothere' not found in" in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--model-dir", ECHO, "--git-uri", "https://example.invalid/x.git"],
         "--model-dir and --git-uri are both given: choose one model source"),
        (["--git-uri", "https://example.invalid/x.git", "--model-id", "m"], "--git-uri and --model-id are both given"),
        ([], "no model code: give exactly one of --model-dir, --git-uri or --model-id"),
        (["--model-dir", ECHO, "--git-ref", "main"], "--git-ref needs --git-uri"),
    ],
    ids=["dir-and-git", "git-and-stored", "no-source", "ref-without-git"],
)
def test_exactly_one_model_source(argv, message):
    code, out, err = create(*argv, "--route", ROUTE)
    assert code == 2
    assert out == ""
    assert message in err


def test_no_route():
    code, _, err = create("--model-dir", ECHO)
    assert code == 2
    assert "give at least one --route or a --route-file" in err


@pytest.mark.parametrize("env", ["NOEQUALS", "=value", "1X=2", "A B=c"])
def test_bad_env(env):
    code, _, err = create("--model-dir", ECHO, "--route", ROUTE, "--env", env)
    assert code == 2
    assert "Invalid value for '--env'" in err
    assert "is not KEY=VALUE" in err


def test_env_value_may_hold_equals_and_be_empty():
    from trainml_cli.cli.params import ENV

    assert ENV.convert("A=b=c", None, None) == ("A", "b=c")
    assert ENV.convert("EMPTY=", None, None) == ("EMPTY", "")


def test_model_dir_must_exist(tmp_path):
    code, _, err = create("--model-dir", str(tmp_path / "nope"), "--route", ROUTE)
    assert code == 2
    assert "Directory" in err and "does not exist" in err


def test_a_symbolic_link_out_of_the_model_dir_is_refused_naming_it(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "predict.py").write_text((MODELS / "cli_echo" / "predict.py").read_text())
    (model / "passwd").symlink_to("/etc/passwd")
    code, _, err = create("--model-dir", str(model), "--route", ROUTE)
    assert code == 2, err  # exit 1 would mean a request was sent (TRAINML_API_URL is closed): nothing was
    assert "passwd is a symbolic link to /etc/passwd, outside the folder" in err and "Traceback" not in err


@pytest.mark.parametrize("option, value", [("--gpu-count", "-1"), ("--max-concurrency", "0"), ("--timeout", "0")])
def test_numbers_out_of_range(option, value):
    code, _, err = create("--model-dir", ECHO, "--route", ROUTE, option, value)
    assert code == 2
    assert "Invalid value for " in err and f"'{option}'" in err


def test_call_data_must_be_json():
    code, _, err = run_cli("job", "call", "demo", "/echo", "--data", '{"text": ')
    assert code == 2
    assert "not valid JSON: Expecting value at line 1 column 10" in err


def test_call_data_from_a_missing_file(tmp_path):
    code, _, err = run_cli("job", "call", "demo", "/echo", "--data", f"@{tmp_path}/none.json")
    assert code == 2
    assert "none.json: No such file or directory" in err


def test_model_create_needs_one_source():
    code, _, err = run_cli("model", "create", "m")
    assert code == 2
    assert "no model code: give exactly one of --model-dir or --git-uri" in err


def test_unknown_command_and_format():
    assert run_cli("job", "explode")[0] == 2
    code, _, err = run_cli("job", "list", "--format", "xml")
    assert code == 2
    assert "'xml' is not one of 'text', 'json'" in err


def test_an_api_url_without_a_scheme_is_taken_as_trainml_takes_it():
    # trainML's TRAINML_API_URL is a host, meaning HTTPS; on loopback a control plane answers plain HTTP.
    from trainml_cli.settings import api_url_of

    assert [api_url_of(value) for value in ("api.example.com", "plane.example.com:8443", "localhost:9",
                                            "127.0.0.1:9", "https://h:1")] == [
        "https://api.example.com", "https://plane.example.com:8443", "http://localhost:9", "http://127.0.0.1:9",
        "https://h:1"]
    code, out, err = run_cli("job", "list", env={"TRAINML_API_URL": "127.0.0.1:9"})
    assert code == 1 and out == ""
    assert "cannot reach the control plane at http://127.0.0.1:9" in err


def test_an_api_url_of_another_scheme_is_a_usage_error():
    code, out, err = run_cli("--api-url", "ftp://localhost:1", "job", "list")
    assert code == 2
    assert "Invalid value for '--api-url': 'ftp://localhost:1' must start with http:// or https://" in err


@pytest.mark.parametrize("argv", [("job", "list", "-f", "JSON"), ("job", "remove", "--no-force", "x"),
                                  ("job", "connect", "--no-attach", "x"), ("model", "remove", "--force", "x")])
def test_trainml_flags_are_taken(argv):
    # Past parsing, the command asks the control plane (nothing listens): exit 1, not click's 2.
    code, _, err = run_cli(*argv)
    assert code == 1, err
    assert "cannot reach the control plane" in err


def test_trainml_configure_explains_there_is_nothing_to_configure():
    code, out, err = run_cli("configure")
    assert (code, err) == (0, "")
    assert out.startswith("Nothing to configure: a self-hosted control plane has no accounts or projects.")


def test_an_empty_route_file_says_so(tmp_path):
    empty = tmp_path / "routes.json"
    empty.write_text("[]")
    code, out, err = create("--model-dir", ECHO, "--route-file", str(empty))
    assert code == 2
    assert f"route file {empty} holds no routes" in err
