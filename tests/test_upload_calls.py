"""A file upload end to end: a real control plane and endpoint process on loopback, the create output's `curl -F`
example, and `trainml job call --file` sending a multipart body the function reads as a Path."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ControlPlane, kill_everything_under

MODELS = Path(__file__).parent / "models"


@pytest.fixture
def env(tmp_path):
    plane = ControlPlane(tmp_path / "home").start()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TRAINML_HOME": str(plane.home),
           "TRAINML_API_URL": plane.url, "NO_COLOR": "1", "COLUMNS": "200"}
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    yield env
    plane.stop()
    kill_everything_under(plane.home)


def trainml(env, *argv):
    return subprocess.run([sys.executable, "-m", "trainml_cli", *argv], capture_output=True, text=True, env=env,
                          timeout=120)


def test_job_call_file_uploads_a_file_the_function_reads_as_a_path(env, tmp_path):
    spec = {"verb": "POST", "path": "/describe", "file": "predict", "function": "describe",
            "body": [{"name": "image", "type": "file"}, {"name": "count", "type": "int", "optional": True}]}
    created = trainml(env, "job", "create", "endpoint", "photos", "--model-dir", str(MODELS / "uploads"),
                      "--route", json.dumps(spec))
    assert created.returncode == 0, created.stderr
    assert "-F image=@image.bin" in created.stdout  # the example sends the file as a form part
    image = tmp_path / "cat.png"
    data = os.urandom(300_000)
    image.write_bytes(data)
    called = trainml(env, "job", "call", "photos", "/describe", "--file", f"image=@{image}", "-d", '{"count": 3}')
    assert called.returncode == 0, called.stderr
    answer = json.loads(called.stdout)
    assert (answer["size"], answer["sha256"]) == (300_000, hashlib.sha256(data).hexdigest())
    assert (answer["name"], answer["content_type"], answer["other"]["count"]) == ("cat.png", "image/png", 3)
    deadline = time.monotonic() + 10  # removed on a thread once the answer has gone
    while Path(answer["path"]).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(answer["path"]).exists()
    wrong = trainml(env, "job", "call", "photos", "/describe", "--file", f"picture=@{image}")
    assert wrong.returncode == 2 and "has no file param 'picture' (its file params: image)" in wrong.stderr
