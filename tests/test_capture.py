"""Request capture end to end: a job created with --capture 1 by the CLI, called over HTTP by real processes, read
back with `trainml job requests` and sent again with `trainml job replay` (the recorder's details: unit tier)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import requests

from conftest import MODELS, route

HEADER_VALUE = "Bearer never-kept-" + os.urandom(8).hex()


def trainml(plane, *argv, timeout=120):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TRAINML_HOME": str(plane.home),
           "TRAINML_API_URL": plane.url, "NO_COLOR": "1", "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "trainml_cli", *argv], capture_output=True, text=True, env=env,
                          timeout=timeout)


def test_captured_calls_are_listed_with_their_ids_and_replayed_and_no_header_is_kept(control_plane):
    created = trainml(control_plane, "job", "create", "endpoint", "captured", "--model-dir", str(MODELS / "echo"),
                      "--route", json.dumps(route()), "--capture", "1", "--format", "json")
    assert created.returncode == 0, created.stderr
    url = json.loads(created.stdout)["url"]
    answers = [requests.post(url + "/predict", json={"text": f"call {i}"}, headers={"Authorization": HEADER_VALUE},
                             timeout=30) for i in range(3)]
    answers.append(requests.post(url + "/predict", json={"wrong": 1}, timeout=30))
    assert [a.status_code for a in answers] == [200, 200, 200, 422]
    ids = [a.headers["x-request-id"] for a in answers]

    listed = []
    for _ in range(50):  # the writer runs beside the calls: their entries come within moments
        result = trainml(control_plane, "job", "requests", "captured", "--format", "json")
        assert result.returncode == 0, result.stderr
        listed = json.loads(result.stdout)
        if len(listed) == 4:
            break
    assert [e["id"] for e in listed] == ids
    assert [e["status"] for e in listed] == [200, 200, 200, 422]
    assert listed[1]["request"] == {"text": "call 1"} and listed[1]["response"] == {"echo": "call 1"}
    errors_only = json.loads(trainml(control_plane, "job", "requests", "captured", "--status", "4xx",
                                     "--format", "json").stdout)
    assert [e["id"] for e in errors_only] == ids[3:]

    replayed = trainml(control_plane, "job", "replay", "captured", ids[0])
    assert replayed.returncode == 0, replayed.stderr
    assert 'old: 200  {"echo": "call 0"}' in replayed.stdout and 'new: 200  {"echo": "call 0"}' in replayed.stdout
    assert "The answers are the same." in replayed.stdout

    assert list(control_plane.home.rglob("requests/*.jsonl"))  # what the second test finds none of
    outputs = created.stdout + created.stderr + result.stdout + replayed.stdout
    assert HEADER_VALUE.split()[1] not in outputs
    for folder, _, files in os.walk(control_plane.home):
        for name in files:
            path = os.path.join(folder, name)
            if os.path.isfile(path):
                with open(path, "rb") as file:
                    assert HEADER_VALUE.split()[1].encode() not in file.read(), path


def test_without_capture_nothing_is_kept_and_a_rate_past_one_is_refused(control_plane):
    refused = trainml(control_plane, "job", "create", "endpoint", "bad", "--model-dir", str(MODELS / "echo"),
                      "--route", json.dumps(route()), "--capture", "1.5")
    assert refused.returncode == 2 and "--capture" in refused.stderr and "Traceback" not in refused.stderr
    api = control_plane.api("POST", "/api/jobs", json={"name": "bad", "model": {"source_type": "local"},
                                                       "endpoint": {"routes": [route()], "capture": 1.5}})
    assert api.status_code == 422 and "capture" in api.text
    created = trainml(control_plane, "job", "create", "endpoint", "plain", "--model-dir", str(MODELS / "echo"),
                      "--route", json.dumps(route()), "--format", "json")
    assert created.returncode == 0, created.stderr
    url = json.loads(created.stdout)["url"]
    assert requests.post(url + "/predict", json={"text": "x"}, timeout=30).status_code == 200
    listed = trainml(control_plane, "job", "requests", "plain", "--format", "json")
    assert listed.returncode == 0 and json.loads(listed.stdout) == []
    assert not list(control_plane.home.rglob("requests/*.jsonl"))
