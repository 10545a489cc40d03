"""The CLI against a real control plane on loopback: as a script runs it (a subprocess) and through CliRunner.

One control plane serves the whole module (starting one per test would cost more than the tests), in its own
temporary TRAINML_HOME; every job gets its own name so tests do not depend on each other's order.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import ControlPlane, default_sigint, kill_everything_under
from trainml_cli.cli.main import main

MODELS = Path(__file__).parent / "models"
ECHO = str(MODELS / "cli_echo")
ECHO_ROUTE = {"verb": "POST", "path": "/echo", "file": "predict", "function": "echo",
              "body": [{"name": "text", "type": "str"}, {"name": "times", "type": "int", "optional": True,
                                                         "default_value": "2"}]}
ADD_ROUTE = {"verb": "GET", "path": "/add", "file": "predict", "function": "add",
             "body": [{"name": "a", "type": "int"}, {"name": "b", "type": "int"}]}
ROUTES = ["--route", json.dumps(ECHO_ROUTE), "--route", json.dumps(ADD_ROUTE)]
URL_LINE = re.compile(r"^Endpoint is running at:  (http://127\.0\.0\.1:\d+)$")


@pytest.fixture(scope="module")
def plane(tmp_path_factory):
    plane = ControlPlane(tmp_path_factory.mktemp("cli") / "home").start()
    yield plane
    plane.stop()
    kill_everything_under(plane.home)


@pytest.fixture(scope="module")
def env(plane):
    # PATH kept for git and curl; nothing else of the developer's environment leaks in.
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TRAINML_HOME": str(plane.home),
            "TRAINML_API_URL": plane.url, "NO_COLOR": "1"}


def trainml(env, *argv, timeout=90):
    """The real entry point as a script runs it."""
    return subprocess.run([sys.executable, "-m", "trainml_cli", *argv], capture_output=True, text=True, env=env,
                          timeout=timeout)


def run_cli(env, *argv):
    """main(argv) in this process: (exit code, stdout, stderr)."""
    with CliRunner().isolation(env=env) as (out, err, _):
        code = main(list(argv))
    return code, out.getvalue().decode(), err.getvalue().decode()


def job_names(env) -> list[str]:
    code, out, _ = run_cli(env, "job", "list", "--format", "json")
    assert code == 0
    return [job["name"] for job in json.loads(out)]


def test_create_from_a_local_dir_prints_the_url_and_curl_commands_that_work(env):
    result = trainml(env, "job", "create", "endpoint", "local-echo", "--model-dir", ECHO, *ROUTES)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    url = URL_LINE.match(lines[-1]).group(1)  # trainML's last line: `| tail -1` takes it
    assert len(lines) == 3
    assert lines[0] == (f"curl -X POST {url}/echo -H 'Content-Type: application/json' "
                        "-d '{\"text\": \"text\", \"times\": 2}'")
    assert lines[1] == f"curl '{url}/add?a=1&b=1'"
    # Ready to paste: each runs in a shell and gets the model's answer.
    answers = [json.loads(subprocess.run(["bash", "-c", line + " -s"], capture_output=True, text=True,
                                         timeout=30).stdout) for line in lines[:2]]
    assert answers == [{"echo": "texttext"}, {"sum": 2}]
    # Not a terminal: plain status lines on stderr, no spinner, no escape codes.
    assert "local-echo: running" in result.stderr.splitlines()
    assert "\x1b" not in result.stdout + result.stderr


def test_create_from_git_with_format_json_for_scripts(env, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "predict.py").write_text((MODELS / "cli_echo" / "predict.py").read_text())
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    for step in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-qm", "model"]):
        subprocess.run(git + step, check=True, capture_output=True)
    commit = subprocess.run(git + ["rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    result = trainml(env, "job", "create", "endpoint", "git-echo", "--git-uri", str(repo), "--git-ref", "main",
                     "--route", json.dumps(ECHO_ROUTE), "--format", "json")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)  # stdout is the record and nothing else
    assert record["status"] == "running"
    assert record["name"] == "git-echo"
    assert URL_LINE.match(f"Endpoint is running at:  {record['url']}")
    assert record["model"]["source_type"] == "git"
    assert record["model"]["git_commit"] == commit
    code, out, _ = run_cli(env, "job", "call", "git-echo", "/echo", "--data", '{"text": "g", "times": 3}')
    assert (code, json.loads(out)) == (0, {"echo": "ggg"})


def test_create_from_a_stored_model(env):
    code, out, err = run_cli(env, "model", "create", "stored-echo", "--model-dir", ECHO, "--format", "json")
    assert code == 0, err
    model = json.loads(out)
    code, out, _ = run_cli(env, "model", "list")
    assert code == 0
    assert out.splitlines()[0].split() == ["ID", "NAME", "SOURCE", "SIZE", "CREATED"]
    assert any(line.split()[:3] == [model["id"], "stored-echo", "local"] for line in out.splitlines())
    code, out, _ = run_cli(env, "job", "create", "endpoint", "stored-job", "--model-id", "stored-echo",
                           "--route", json.dumps(ECHO_ROUTE), "--no-connect", "--format", "json")
    assert code == 0
    assert json.loads(out)["model"]["source_type"] == "trainml"
    code, out, _ = run_cli(env, "job", "connect", "stored-job")
    assert code == 0
    assert URL_LINE.match(out.splitlines()[-1])
    code, out, _ = run_cli(env, "model", "get", model["id"])
    assert code == 0 and "Name:    stored-echo" in out
    assert run_cli(env, "job", "remove", "--force", "stored-job")[0] == 0
    code, out, _ = run_cli(env, "model", "remove", "stored-echo")
    assert (code, out) == (0, "Removed model stored-echo.\n")
    code, _, err = run_cli(env, "model", "get", "stored-echo")
    assert code == 1 and "not found" in err


def test_job_call_get_list_and_output_file(env, tmp_path):
    assert trainml(env, "job", "create", "endpoint", "calls", "--model-dir", ECHO, *ROUTES).returncode == 0
    code, out, _ = run_cli(env, "job", "call", "calls", "GET /add", "-d", '{"a": 2, "b": 40}')
    assert (code, json.loads(out)) == (0, {"sum": 42})
    code, _, err = run_cli(env, "job", "call", "calls", "/nope")
    assert code == 2
    assert err == "Error: job calls has no route '/nope' (its routes: POST /echo, GET /add)\n"
    code, out, _ = run_cli(env, "job", "get", "calls")
    assert code == 0
    for label in ("ID:", "Status:    running", "URL:", "Routes:", "  POST /echo -> predict:echo", "Model:     local",
                  "Resources:", "Run time:", "Credits:", "Restarts:  0"):
        assert label in out
    code, out, _ = run_cli(env, "job", "list")
    header, *rows = out.splitlines()
    assert header.split() == ["ID", "NAME", "STATUS", "URL"]
    assert any(row.split()[1:3] == ["calls", "running"] for row in rows)
    target = tmp_path / "jobs.json"
    code, out, err = run_cli(env, "-o", str(target), "--silent", "job", "list", "--format", "json")
    assert (code, out, err) == (0, "", "")
    assert "calls" in [job["name"] for job in json.loads(target.read_text())]
    assert run_cli(env, "job", "remove", "--force", "calls")[0] == 0


def test_logs_stop_start_remove(env):
    assert trainml(env, "job", "create", "endpoint", "life", "--model-dir", ECHO, *ROUTES).returncode == 0
    code, out, _ = run_cli(env, "job", "logs", "life")
    assert code == 0 and "cli_echo model loaded" in out
    code, out, _ = run_cli(env, "job", "logs", "life", "--tail", "2", "--format", "json")
    entries = [json.loads(line) for line in out.splitlines()]
    assert len(entries) == 2 and {"id", "time", "stream", "message"} <= set(entries[0])

    # `logs -f` follows until the job stops, then ends by itself with exit 0.
    follow = subprocess.Popen([sys.executable, "-m", "trainml_cli", "job", "logs", "-f", "life"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
        assert follow.poll() is None
        code, out, _ = run_cli(env, "job", "stop", "life")
        assert (code, out) == (0, "Job life stopped.\n")
        followed, _ = follow.communicate(timeout=30)
    finally:
        follow.kill()
    assert follow.returncode == 0
    assert "cli_echo model loaded" in followed and "stopped" in followed.splitlines()[-1]

    code, out, _ = run_cli(env, "job", "get", "life", "--format", "json")
    assert json.loads(out)["status"] == "stopped"
    code, _, err = run_cli(env, "job", "call", "life", "/echo", "-d", '{"text": "x"}')
    assert code == 1 and "stopped" in err
    code, out, _ = run_cli(env, "job", "start", "life", "--connect")
    assert code == 0 and URL_LINE.match(out.splitlines()[-1])
    code, _, err = run_cli(env, "job", "remove", "life")
    assert code == 1 and "running" in err and err.count("\n") == 1
    assert run_cli(env, "job", "remove", "life", "--force") == (0, "Removed job life.\n", "")
    code, _, err = run_cli(env, "job", "get", "life")
    assert (code, err) == (1, "Error: job 'life' not found (see the job list)\n")


def test_a_failed_job_prints_its_reason_and_last_log_lines(env):
    result = trainml(env, "job", "create", "endpoint", "fails", "--model-dir", str(MODELS / "cli_fails"),
                     "--route", json.dumps({"verb": "POST", "path": "/p", "file": "predict", "function": "predict"}))
    assert result.returncode == 1
    assert result.stdout == ""
    assert [line for line in result.stderr.splitlines() if line.startswith("Error: ")] == [
        "Error: job fails failed: model code failed to load: route POST /p: importing predict.py failed: "
        "RuntimeError: cli_fails refuses to load"
    ]
    assert "last log lines:" in result.stderr
    assert "RuntimeError: cli_fails refuses to load" in result.stderr
    assert "Traceback (most recent call last)" not in result.stderr.split("last log lines:")[0]
    # Once: the reason (which goes on with these lines) is not logged again beside them.
    assert result.stderr.count("Traceback (most recent call last)") == 1, result.stderr



def test_a_load_failure_with_a_traceback_past_the_last_log_lines_still_names_its_cause(env):
    # The runtime's load-failure record (contracts.LoadFailure) carries the cause; the last 20 log lines, which the
    # reason used to be read from, hold only the end of this traceback.
    result = trainml(env, "job", "create", "endpoint", "deep", "--model-dir", str(MODELS / "deep_import_error"),
                     "--route", json.dumps({"verb": "POST", "path": "/p", "file": "predict", "function": "predict"}))
    assert result.returncode == 1
    assert [line for line in result.stderr.splitlines() if line.startswith("Error: ")] == [
        "Error: job deep failed: model code failed to load: route POST /p: importing predict.py failed: "
        "ValueError: deep_import_error: the weights file is missing"
    ]
    logs = trainml(env, "job", "logs", "deep").stdout
    assert "error: route POST /p: importing predict.py failed:" in logs  # the runtime's own line, for people
    assert "trainml.load_failure" not in logs  # the record is the control plane's, not the job's output

def test_a_timeout_exits_1_and_says_the_job_is_still_starting(env):
    code, out, err = run_cli(env, "job", "create", "endpoint", "slowpoke", "--model-dir", ECHO, *ROUTES,
                             "--timeout", "0.01")
    assert code == 1 and out == ""
    assert re.search(r"Error: job slowpoke is still starting \(status: [a-z /]+\) after 0.01 s", err)
    code, out, _ = run_cli(env, "job", "connect", "slowpoke")  # it kept going
    assert code == 0 and URL_LINE.match(out.splitlines()[-1])
    assert run_cli(env, "job", "remove", "--force", "slowpoke")[0] == 0


def test_unknown_and_ambiguous_jobs(env):
    code, out, err = run_cli(env, "job", "get", "no-such-job")
    assert (code, out, err) == (1, "", "Error: job 'no-such-job' not found (see the job list)\n")
    ids = []
    for _ in range(2):
        code, out, _ = run_cli(env, "job", "create", "endpoint", "twin", "--model-dir", ECHO, *ROUTES,
                               "--no-connect", "--format", "json")
        assert code == 0
        ids.append(json.loads(out)["id"])
    code, _, err = run_cli(env, "job", "stop", "twin")
    assert code == 2  # ambiguous: a usage error, say which
    assert all(job_id in err for job_id in ids) and err.startswith("Error: 2 jobs are named 'twin'")
    for job_id in ids:
        assert run_cli(env, "job", "remove", "--force", job_id)[0] == 0


@pytest.mark.parametrize(
    "argv",
    [
        ["--route", '{"verb": "POST", "path": /x}'],
        ["--route", json.dumps({**ECHO_ROUTE, "body": [{"name": "t", "type": "string"}]})],
        ["--git-uri", "https://example.invalid/x.git", *ROUTES],
        ["--env", "NOT AN ENV", *ROUTES],
        ["--route", json.dumps({**ECHO_ROUTE, "file": "missing"})],
    ],
    ids=["bad-json", "schema", "two-sources", "bad-env", "missing-file"],
)
def test_a_usage_error_leaves_no_job_behind(env, argv):
    before = job_names(env)
    result = trainml(env, "job", "create", "endpoint", "never", "--model-dir", ECHO, *argv)
    assert result.returncode == 2
    assert "Error: " in result.stderr and "Traceback" not in result.stderr
    assert job_names(env) == before and "never" not in before


def test_job_names_complete_from_the_server(env):
    assert trainml(env, "job", "create", "endpoint", "completable", "--model-dir", ECHO, *ROUTES,
                   "--no-connect").returncode == 0
    result = subprocess.run([sys.executable, "-m", "trainml_cli"], capture_output=True, text=True, timeout=30,
                            env={**env, "_TRAINML_COMPLETE": "bash_complete", "COMP_WORDS": "trainml job logs comp",
                                 "COMP_CWORD": "3"})
    assert result.returncode == 0
    assert "plain,completable" in result.stdout.splitlines()
    assert run_cli(env, "job", "remove", "--force", "completable")[0] == 0


def test_ctrl_c_while_waiting_exits_130_and_leaves_the_job(env):
    waiting = subprocess.Popen([sys.executable, "-m", "trainml_cli", "job", "create", "endpoint", "interrupted",
                                "--model-dir", ECHO, *ROUTES, "--attach"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)
    try:
        deadline = time.monotonic() + 30
        while "interrupted" not in job_names(env) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        started = time.monotonic()
        waiting.send_signal(signal.SIGINT)
        _, err = waiting.communicate(timeout=10)
        assert time.monotonic() - started < 5  # no wait for a long-poll to come back
    finally:
        waiting.kill()
    assert waiting.returncode == 130
    assert "Traceback" not in err
    assert "interrupted" in job_names(env)
    assert run_cli(env, "job", "remove", "--force", "interrupted")[0] == 0


def test_escape_sequences_from_model_code_reach_the_terminal_as_text(env):
    result = trainml(env, "job", "create", "endpoint", "escapes", "--model-dir", str(MODELS / "cli_escapes"),
                     "--route", json.dumps({"verb": "POST", "path": "/p", "file": "predict", "function": "predict"}))
    assert result.returncode == 1
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr and "\r" not in result.stderr
    assert r"set title \x1b]0;owned\x07 then clear \x1b[2J\x1b[H; rewrite\x0dfake line" in result.stderr
    assert r"RuntimeError: failing \x1b[8mhidden\x1b[0m" in result.stderr
    result = trainml(env, "job", "logs", "escapes")
    assert result.returncode == 0
    assert "\x1b" not in result.stdout and r"\x1b]0;owned\x07" in result.stdout
    result = trainml(env, "job", "logs", "escapes", "--format", "json")  # JSON keeps the exact text, escaped by JSON
    assert any("\x1b]0;owned\x07" in json.loads(line)["message"] for line in result.stdout.splitlines())
    assert run_cli(env, "job", "remove", "escapes")[0] == 0


def test_call_timeout_sets_how_long_one_call_may_run(env):
    sleep_route = {"verb": "POST", "path": "/sleep", "file": "predict", "function": "sleep",
                   "body": [{"name": "seconds", "type": "float"}]}
    created = trainml(env, "job", "create", "endpoint", "short-calls", "--model-dir", str(MODELS / "blocking"),
                      "--route", json.dumps(sleep_route), "--call-timeout", "0.5")
    assert created.returncode == 0, created.stderr
    quick = trainml(env, "job", "call", "short-calls", "/sleep", "--data", '{"seconds": 0.01}')
    assert quick.returncode == 0 and json.loads(quick.stdout) == {"slept": 0.01}
    slow = trainml(env, "job", "call", "short-calls", "/sleep", "--data", '{"seconds": 3}')
    assert slow.returncode == 1
    assert "ran longer than the endpoint's timeout of 0.5s" in slow.stderr
    trainml(env, "job", "remove", "short-calls", "--force")
