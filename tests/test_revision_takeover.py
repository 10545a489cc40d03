"""An update or rollback that changes a running endpoint's GPUs or its key (real control plane with declared
GPUs, real endpoint processes, real clients on loopback under steady load)."""

from __future__ import annotations

import json
import time

import requests

from conftest import route, run, wait_until
from test_revisions import Load, revisions, trainml

GPU = {"gpu_types": ["rtx3090"], "gpu_count": 1}


def write_model(folder, version):
    """Answers its version and the GPUs it was given."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "predict.py").write_text(
        "import os\n\n"
        f"def predict(text):\n    return {{'version': {version}, 'gpus': os.environ['CUDA_VISIBLE_DEVICES'],"
        " 'echo': text}\n")
    return folder


def create(plane, folder, name="live", resources=None):
    async def scenario():
        async with plane.client() as client:
            job = await client.jobs.create(name, model={"source_type": "local", "source_uri": str(folder)},
                                           endpoint={"routes": [route()]}, resources=resources)
            await job.wait_for("running", timeout=120)
            return job.url

    return run(scenario())


def call(url, key=None):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return requests.post(url + "/predict", json={"text": "x"}, headers=headers, timeout=30)


def free_gpus(plane):
    answer = requests.get(plane.url + "/api/gpus", headers={"Authorization": f"Bearer {plane.token}"}, timeout=10)
    answer.raise_for_status()
    return sum(row["free"] for row in answer.json() if row["type"] == "rtx3090")


def test_gpus_blue_green_when_free_refused_when_free_only_after_and_recreate_waits_callers(start_control_plane,
                                                                                           tmp_path):
    plane = start_control_plane("--gpus", "0:rtx3090,1:rtx3090")
    folder = write_model(tmp_path / "model", 1)
    url = create(plane, folder, resources=GPU)
    assert call(url).json()["gpus"] == "0"

    # Enough free GPUs: the new revision gets its own, the old one's are freed when it stops.
    write_model(folder, 2)
    result = trainml(plane, "job", "update", "live", "--model-dir", str(folder))
    assert result.returncode == 0, result.stdout + result.stderr
    assert call(url).json() == {"version": 2, "gpus": "1", "echo": "x"}
    assert free_gpus(plane) == 1

    # Two GPUs while the serving revision holds one of the two: free only once it stops.
    result = trainml(plane, "job", "update", "live", "--gpu-count", "2")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "free only once the serving revision stops" in result.stderr
    assert "--strategy recreate" in result.stderr and "GPU 1" in result.stderr
    assert [r["revision"] for r in revisions(plane)] == [1, 2]  # nothing created
    assert call(url).json()["version"] == 2 and free_gpus(plane) == 1

    write_model(folder, 3)
    with Load(url) as load:
        wait_until(lambda: load.count_since(0) >= 30, 60, message="calls before the recreate")
        result = trainml(plane, "job", "update", "live", "--gpu-count", "2", "--model-dir", str(folder),
                         "--strategy", "recreate")
        returned = time.monotonic()
        assert result.returncode == 0, result.stdout + result.stderr
        assert "--strategy recreate: no process accepted calls for" in result.stdout
        wait_until(lambda: load.count_since(returned) >= 30, 60, message="calls after the recreate")
    assert load.failures == []  # they waited in the socket's backlog
    assert {version for sent, version in load.answers if sent > returned} == {3}
    assert sorted(call(url).json()["gpus"].split(",")) == ["0", "1"] and free_gpus(plane) == 0

    rows = revisions(plane)
    assert [(r["revision"], r["status"], r["gpus"]) for r in rows] == [
        (1, "retired", "1 x rtx3090"), (2, "retired", "1 x rtx3090"), (3, "serving", "2 x rtx3090")]

    # Back to one GPU: it fits only once revision 3 stops (both are its), so blue-green is refused again.
    result = trainml(plane, "job", "rollback", "live")
    assert result.returncode == 1 and "--strategy recreate" in result.stderr, result.stdout + result.stderr
    result = trainml(plane, "job", "rollback", "live", "--strategy", "recreate")
    assert result.returncode == 0, result.stdout + result.stderr
    answer = call(url).json()
    assert answer["version"] == 2 and answer["gpus"] in ("0", "1")
    assert free_gpus(plane) == 1


def test_auth_turned_on_then_off_without_a_failed_call_for_callers_sending_the_key(control_plane, tmp_path):
    folder = write_model(tmp_path / "model", 1)
    url = create(control_plane, folder)
    assert call(url).status_code == 200

    result = trainml(control_plane, "job", "update", "live", "--auth")
    assert result.returncode == 0, result.stdout + result.stderr
    key = next(line.split()[2] for line in result.stdout.splitlines() if line.startswith("Endpoint key: "))
    assert key.startswith("tmlk_")
    assert call(url).status_code == 401
    assert call(url, key).json()["version"] == 1
    assert [(r["revision"], r["auth"]) for r in revisions(control_plane)] == [(1, False), (2, True)]

    write_model(folder, 3)
    with Load(url, headers={"Authorization": f"Bearer {key}"}) as load:
        wait_until(lambda: load.count_since(0) >= 30, 60, message="calls with the key before the update")
        result = trainml(control_plane, "job", "update", "live", "--no-auth", "--model-dir", str(folder))
        returned = time.monotonic()
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Endpoint key" not in result.stdout
        wait_until(lambda: load.count_since(returned) >= 30, 60, message="calls after the update")
    assert load.failures == []
    assert {version for sent, version in load.answers if sent > returned} == {3}
    assert call(url).json()["version"] == 3  # no key needed any more
    connect = json.loads(trainml(control_plane, "job", "connect", "live", "--format", "json").stdout)
    assert connect.get("key") is None and not connect["endpoint"].get("auth")
    assert list((control_plane.home / "jobs").glob("*/endpoint.key")) == []

    # Rolling back to the revision with auth makes a new key: the dropped one never comes back.
    result = trainml(control_plane, "job", "rollback", "live", "--to", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    again = next(line.split()[2] for line in result.stdout.splitlines() if line.startswith("Endpoint key: "))
    assert again != key
    assert call(url, key).status_code == 401 and call(url).status_code == 401
    assert call(url, again).json()["version"] == 1


def test_a_recreate_whose_code_cannot_load_starts_the_serving_revision_again(control_plane, tmp_path):
    folder = write_model(tmp_path / "model", 1)
    url = create(control_plane, folder)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "predict.py").write_text("raise RuntimeError('revision cannot load: missing weights')\n")
    result = trainml(control_plane, "job", "update", "live", "--model-dir", str(broken), "--strategy", "recreate")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "missing weights" in result.stderr
    assert [(r["revision"], r["status"]) for r in revisions(control_plane)] == [(1, "serving"), (2, "failed")]
    wait_until(lambda: call(url).status_code == 200, 60, message="revision 1 serving again")
    assert call(url).json()["version"] == 1
    wait_until(lambda: json.loads(trainml(control_plane, "job", "get", "live", "--format", "json").stdout)["status"]
               == "running", 60, message="the job running again")
