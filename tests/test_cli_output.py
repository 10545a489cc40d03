"""The one output module: plain text for pipes, rich for terminals, JSON for scripts, silence on request."""

import io
import json
import re
import shlex
import sys
from types import SimpleNamespace

import pytest

from trainml_cli.cli.jobview import describe
from trainml_cli.cli.output import Output
from trainml_cli.routecalls import curl_command
from trainml_cli.routespec import parse_routes

COLOUR = re.compile(r"\x1b\[[0-9;]*(3[0-9]|9[0-7])m")  # a foreground colour escape


def options(**values):
    return SimpleNamespace(**{"silent": False, "verbose": 0, "output_file": None, **values})


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_plain_table_is_aligned_for_awk(capsys):
    Output(options()).table(["ID", "NAME", "STATUS"], [("j1", "sentiment", "running"), ("j22", "x", "failed")])
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["ID   NAME       STATUS", "j1   sentiment  running", "j22  x          failed"]
    assert [line.split()[2] for line in lines[1:]] == ["running", "failed"]


def test_an_empty_plain_table_is_just_its_header(capsys):
    Output(options()).table(["ID", "NAME"], [], empty="No jobs yet.")
    captured = capsys.readouterr()
    assert captured.out == "ID  NAME\n"
    assert captured.err == ""


def test_no_escape_codes_and_no_rich_when_not_a_terminal(capsys):
    out = Output(options())
    out.table(["STATUS"], [("running",)], status_column="STATUS")
    out.fields([("Status", "failed"), ("Routes", ["POST /a", "GET /b"])])
    text = capsys.readouterr().out
    assert "\x1b" not in text
    assert out._console is None
    assert "Routes:\n  POST /a\n  GET /b\n" in text


def test_json_is_pure_on_stdout(capsys):
    out = Output(options(), "json")
    with out.progress("starting"):
        out.json({"id": "j1", "status": "running"})
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"id": "j1", "status": "running"}
    assert captured.err == "starting\n"


def test_progress_prints_one_line_per_change_on_stderr(capsys):
    with Output(options()).progress("demo: new") as progress:
        for status in ("new", "starting", "starting", "running"):
            progress.update(f"demo: {status}")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == ["demo: new", "demo: starting", "demo: running"]


def test_silent_prints_nothing_but_still_writes_the_output_file(capsys, tmp_path):
    Output(options(silent=True)).line("result")
    with Output(options(silent=True)).progress("working") as progress:
        progress.update("still working")
    Output(options(silent=True)).note("note")
    assert capsys.readouterr() == ("", "")
    with open(tmp_path / "out.txt", "w") as handle:
        out = Output(options(silent=True, output_file=handle), "json")
        out.json({"ok": True})
    assert json.loads((tmp_path / "out.txt").read_text()) == {"ok": True}
    assert capsys.readouterr() == ("", "")


def test_terminal_gets_colour_unless_no_color(monkeypatch):
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.delenv("NO_COLOR", raising=False)
    for no_color, expect_colour in (("", True), ("1", False)):
        if no_color:
            monkeypatch.setenv("NO_COLOR", no_color)
        terminal = FakeTerminal()
        monkeypatch.setattr(sys, "stdout", terminal)
        out = Output(options())
        assert out.terminal
        out.table(["NAME", "STATUS"], [("demo", "running")], status_column="STATUS")
        assert "demo" in terminal.getvalue()
        assert bool(COLOUR.search(terminal.getvalue())) is expect_colour


def test_terminal_never_hard_wraps_a_long_line(monkeypatch):
    monkeypatch.setenv("TERM", "xterm")
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    long = "curl -X POST http://127.0.0.1:1/predict -d '" + "x" * 300 + "'"
    Output(options()).line(long, style="bold")
    assert long in terminal.getvalue()


ROUTES = parse_routes([
    {"verb": "POST", "path": "/predict", "file": "predict", "function": "f",
     "body": [{"name": "text", "type": "str"}, {"name": "n", "type": "int"},
              {"name": "threshold", "type": "float", "optional": True, "default_value": "0.25"},
              {"name": "tags", "type": "list"}, {"name": "opts", "type": "dict"}, {"name": "on", "type": "bool"}]},
    {"verb": "GET", "path": "/items", "file": "predict", "function": "g",
     "body": [{"name": "item_id", "type": "int"}, {"name": "verbose", "type": "bool"}, {"name": "q", "type": "str"},
              {"name": "ids", "type": "list"}]},
    {"verb": "DELETE", "path": "/items", "file": "predict", "function": "h"},
    {"verb": "GET", "path": "/health2", "file": "predict", "function": "k"},
])


def test_curl_for_a_body_route_has_a_typed_example_for_every_param():
    command = curl_command("http://127.0.0.1:4000/", ROUTES[0])
    argv = shlex.split(command)
    assert argv[:4] == ["curl", "-X", "POST", "http://127.0.0.1:4000/predict"]
    assert argv[4:6] == ["-H", "Content-Type: application/json"]
    assert json.loads(argv[argv.index("-d") + 1]) == {
        "text": "text", "n": 1, "threshold": 0.25, "tags": [], "opts": {}, "on": True
    }


@pytest.mark.parametrize(
    "index, expected",
    [
        (1, ["curl", "http://h:1/items?item_id=1&verbose=true&q=text&ids=%5B%5D"]),
        (2, ["curl", "-X", "DELETE", "http://h:1/items"]),
        (3, ["curl", "http://h:1/health2"]),
    ],
)
def test_curl_for_query_routes(index, expected):
    assert shlex.split(curl_command("http://h:1", ROUTES[index])) == expected


def test_job_get_shows_a_routes_items_choices_and_content_type():
    [route] = parse_routes([{"verb": "POST", "path": "/p", "file": "predict", "function": "f",
                             "content_type": "image/png",
                             "body": [{"name": "xs", "type": "list", "items": "float"},
                                      {"name": "size", "type": "str", "optional": True, "default_value": "'s'",
                                       "choices": ["s", "l"]}]}])
    job = SimpleNamespace(id="j1", name="demo", status="running", url=None, reason=None, credits=0, restarts=0,
                          dict={"routes": [route.to_dict()]})
    assert dict(describe(job))["Routes"] == ["POST /p -> predict:f(xs: list[float], size: str in ('s', 'l') = 's') "
                                             "-> image/png"]


def test_describe_lists_what_job_get_promises():
    record = {
        "routes": [r.to_dict() for r in ROUTES[:1]],
        "model": {"source_type": "git", "source_uri": "https://example.invalid/m.git", "git_ref": "v1"},
        "resources": {"cpu_count": 2, "gpu_types": ["rtx3090", "a100"]},
        "run_time": 3725,
        "created": "2024-01-01T00:00:00Z",
        "environment": {"env": [{"key": "MODE", "value": "secret"}]},
    }
    job = SimpleNamespace(id="j1", name="demo", status="running", url="http://h:1", reason=None, credits=0.5,
                          restarts=1, dict=record)
    fields = dict(describe(job))
    assert fields["Routes"] == ["POST /predict -> predict:f(text: str, n: int, threshold: float = 0.25, tags: list, "
                                "opts: dict, on: bool)"]
    assert fields["Model"] == "git https://example.invalid/m.git @ v1"
    assert fields["Resources"] == "cpu_count=2, gpu_types=rtx3090,a100"
    assert fields["Run time"] == "1h 02m 05s"
    assert fields["Env"] == "MODE"  # names only: values may be secrets
    assert (fields["Credits"], fields["Restarts"]) == ("0.5000", 1)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", fields["Created"])  # local time, to the second
    assert "Reason" not in fields


def test_a_multi_line_reason_is_shown_as_lines():
    job = SimpleNamespace(id="j1", name="demo", status="failed", url=None, reason="load failed:\nTraceback",
                          credits=0, restarts=0, dict={})
    assert dict(describe(job))["Reason"] == ["load failed:", "Traceback"]
