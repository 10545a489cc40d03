"""Updating a running endpoint: new code on the same URL without a failed call, revisions, rollback (real control
plane, real endpoint processes, real clients on loopback under steady load)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest
import requests

from conftest import route, run, wait_until

MAX_CALLS = 4000  # per load thread: bounded even if something hangs


def write_model(folder, version, *, fail=False, load_seconds=0.0, gate=None):
    """`gate`: a file whose appearance lets the code finish loading (a test holds a revision `starting`)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["import os, time", f"time.sleep({load_seconds})"]
    if gate is not None:
        lines.append(f"while not os.path.exists({str(gate)!r}):\n    time.sleep(0.05)")
    if fail:
        lines.append("raise RuntimeError('revision cannot load: missing weights')")
    lines += ["", "def predict(text):", f"    return {{'version': {version}, 'echo': text}}", ""]
    (folder / "predict.py").write_text("\n".join(lines))
    return folder


def trainml(plane, *argv, timeout=300):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TRAINML_HOME": str(plane.home),
           "TRAINML_API_URL": plane.url, "NO_COLOR": "1", "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "trainml_cli", *argv], capture_output=True, text=True, env=env,
                          timeout=timeout)


class Load:
    """Steady calls from `each` keep-alive clients and `each` that open a connection per call, each recording
    (time sent, version answered) or the failure."""

    def __init__(self, url, each=1, timeout=30, headers=None, pause=0.0):
        self.url = url + "/predict"
        self.headers = headers or {}  # e.g. the endpoint key
        self.timeout = timeout  # a call that waits longer failed, for its caller
        self.pause = pause  # seconds between one thread's calls: spares the CPU where a call costs much of it
        self.done = threading.Event()
        self.answers: list[tuple[float, int]] = []
        self.failures: list[str] = []
        self._stopped_at: tuple | None = None  # (since, count) when count_since last found every thread stopped
        self.threads = [threading.Thread(target=self._loop, args=(keep,), daemon=True)
                        for keep in (True, False) for _ in range(each)]

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def _loop(self, keep_alive):
        session = requests.Session() if keep_alive else None
        for i in range(MAX_CALLS):
            if self.done.is_set():
                break
            sent = time.monotonic()
            try:
                if keep_alive:
                    answer = session.post(self.url, json={"text": str(i)}, timeout=self.timeout,
                                          headers=self.headers)
                else:
                    answer = requests.post(self.url, json={"text": str(i)}, timeout=self.timeout,
                                           headers={**self.headers, "Connection": "close"})
                if answer.status_code != 200:
                    self.failures.append(f"{answer.status_code} {answer.text[:200]}")
                else:
                    self.answers.append((sent, answer.json()["version"]))
            except requests.RequestException as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")
            if self.pause:
                self.done.wait(self.pause)

    def count_since(self, since):
        count = sum(1 for sent, _ in self.answers if sent > since)
        # Asked twice since every thread ran out of calls: a wait for more would time out without saying why.
        stopped = not any(thread.is_alive() for thread in self.threads)
        if stopped and self._stopped_at == (since, count):
            raise AssertionError(f"the load stopped after {MAX_CALLS} calls a thread; {len(self.failures)} failed")
        self._stopped_at = (since, count) if stopped else None
        return count


def create(plane, folder, name="live"):
    async def scenario():
        async with plane.client() as client:
            job = await client.jobs.create(name, model={"source_type": "local", "source_uri": str(folder)},
                                           endpoint={"routes": [route()]})
            await job.wait_for("running", timeout=120)
            return job.url

    return run(scenario())


def revisions(plane, name="live"):
    result = trainml(plane, "job", "revisions", name, "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_an_update_under_steady_load_fails_no_call_and_new_calls_reach_the_new_code(control_plane, tmp_path):
    folder = write_model(tmp_path / "model", 1)
    url = create(control_plane, folder)
    with Load(url) as load:
        wait_until(lambda: load.count_since(0) >= 50, 60, message="calls before the update")
        write_model(folder, 2, load_seconds=1.0)  # a load that takes a while: no call may see it loading
        result = trainml(control_plane, "job", "update", "live", "--model-dir", str(folder))
        returned = time.monotonic()
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"Revision 2 of live is serving at: {url}" in result.stdout
        wait_until(lambda: load.count_since(returned) >= 100, 60, message="calls after the update")
    assert load.failures == []
    assert {version for sent, version in load.answers if sent > returned} == {2}
    assert {version for _, version in load.answers} == {1, 2}
    assert len(load.answers) >= 150
    assert requests.get(control_plane.url + "/api/jobs/live", timeout=10,
                        headers={"Authorization": f"Bearer {control_plane.token}"}).json()["url"] == url
    rows = revisions(control_plane)
    assert [(r["revision"], r["status"]) for r in rows] == [(1, "retired"), (2, "serving")]
    assert all(r["created"] and r["source"].startswith("local ") and r["reason"] is None for r in rows)


def test_a_revision_that_cannot_load_fails_alone_and_the_serving_one_goes_on(control_plane, tmp_path):
    url = create(control_plane, write_model(tmp_path / "v1", 1))
    broken = write_model(tmp_path / "broken", 2, fail=True)
    with Load(url) as load:
        wait_until(lambda: load.count_since(0) >= 50, 60, message="calls before the update")
        result = trainml(control_plane, "job", "update", "live", "--model-dir", str(broken))
        returned = time.monotonic()
        assert result.returncode == 1, result.stdout + result.stderr
        assert "revision 2 of job live failed" in result.stderr
        assert "missing weights" in result.stderr and "Traceback" not in result.stderr.split("last log lines")[0]
        wait_until(lambda: load.count_since(returned) >= 50, 60, message="calls after the failed update")
    assert load.failures == []
    assert {version for _, version in load.answers} == {1}
    rows = revisions(control_plane)
    assert [(r["revision"], r["status"]) for r in rows] == [(1, "serving"), (2, "failed")]
    assert "missing weights" in rows[1]["reason"]
    # The next update is numbered after the failed one and serves.
    result = trainml(control_plane, "job", "update", "live", "--model-dir", str(write_model(tmp_path / "v3", 3)))
    assert result.returncode == 0, result.stderr
    assert requests.post(url + "/predict", json={"text": "x"}, timeout=10).json()["version"] == 3


def test_rollback_serves_the_previous_revision_or_the_one_named(control_plane, tmp_path):
    url = create(control_plane, write_model(tmp_path / "v1", 1))
    for version in (2, 3):
        result = trainml(control_plane, "job", "update", "live", "--model-dir",
                         str(write_model(tmp_path / f"v{version}", version)))
        assert result.returncode == 0, result.stderr

    def served():
        return requests.post(url + "/predict", json={"text": "x"}, timeout=10).json()["version"]

    assert served() == 3
    with Load(url) as load:
        wait_until(lambda: load.count_since(0) >= 30, 60, message="calls before the rollback")
        result = trainml(control_plane, "job", "rollback", "live")
        assert result.returncode == 0, result.stderr
        assert "Revision 2 of live is serving again" in result.stdout
        assert served() == 2
        result = trainml(control_plane, "job", "rollback", "live", "--to", "1")
        assert result.returncode == 0, result.stderr
        returned = time.monotonic()
        wait_until(lambda: load.count_since(returned) >= 30, 60, message="calls after the rollback")
    assert load.failures == []
    assert {version for sent, version in load.answers if sent > returned} == {1}
    assert served() == 1
    assert [(r["revision"], r["status"]) for r in revisions(control_plane)] == [
        (1, "serving"), (2, "retired"), (3, "retired")]
    result = trainml(control_plane, "job", "rollback", "live", "--to", "1")
    assert result.returncode == 1 and "revision 1 of job 'live' is serving" in result.stderr
    result = trainml(control_plane, "job", "rollback", "live", "--to", "9")
    assert result.returncode == 1 and "has no revision 9" in result.stderr


def test_a_second_update_while_one_is_deploying_is_refused_naming_it(control_plane, tmp_path):
    create(control_plane, write_model(tmp_path / "v1", 1))
    gate = tmp_path / "loaded"  # revision 2 loads only once the test has tried the second update
    slow = write_model(tmp_path / "slow", 2, gate=gate)
    first = subprocess.Popen  # the first update runs in the background while the second is tried
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TRAINML_HOME": str(control_plane.home),
           "TRAINML_API_URL": control_plane.url, "NO_COLOR": "1", "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    background = first([sys.executable, "-m", "trainml_cli", "job", "update", "live", "--model-dir", str(slow)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        wait_until(lambda: any(r["status"] == "starting" for r in revisions(control_plane)), 60,
                   message="revision 2 to be starting")
        second = trainml(control_plane, "job", "update", "live")
        assert second.returncode == 1
        assert "revision 2 of job 'live' is being deployed" in second.stderr
        answer = control_plane.api("POST", "/api/jobs/live/revisions", json={})
        assert answer.status_code == 409 and "being deployed" in answer.json()["message"]
    finally:
        gate.touch()
        out, err = background.communicate(timeout=120)
    assert background.returncode == 0, out + err
    assert [(r["revision"], r["status"]) for r in revisions(control_plane)] == [(1, "retired"), (2, "serving")]


def test_creating_a_running_jobs_name_again_deploys_the_folder_to_it_when_it_differs(control_plane, tmp_path):
    folder = write_model(tmp_path / "model", 1)
    create_again = ("job", "create", "endpoint", "live", "--model-dir", str(folder), "--route", json.dumps(route()))
    first = trainml(control_plane, *create_again)
    assert first.returncode == 0, first.stderr
    url = first.stdout.split("Endpoint is running at: ")[1].split()[0]
    same = trainml(control_plane, *create_again)
    assert same.returncode == 0, same.stderr
    assert "already serves this code (revision 1); nothing changed" in same.stdout
    assert f"Endpoint is running at:  {url}" in same.stdout
    write_model(folder, 2)
    changed = trainml(control_plane, *create_again)
    assert changed.returncode == 0, changed.stderr
    assert "Revision 2 of job live" in changed.stdout and f"Endpoint is running at:  {url}" in changed.stdout
    assert requests.post(url + "/predict", json={"text": "x"}, timeout=10).json()["version"] == 2
    assert [(r["revision"], r["status"]) for r in revisions(control_plane)] == [(1, "retired"), (2, "serving")]
    second = trainml(control_plane, *create_again, "--new")
    assert second.returncode == 0, second.stderr
    listed = json.loads(trainml(control_plane, "job", "list", "--format", "json").stdout)
    assert [j["name"] for j in listed] == ["live", "live"]


def git(*args, cwd):
    subprocess.run(["git", "-c", "user.name=test", "-c", "user.email=test@example.com", *args], cwd=cwd, check=True,
                   capture_output=True)


def test_an_update_with_no_option_fetches_a_git_branchs_head_again_and_a_local_folders_code_is_kept(
        control_plane, tmp_path):
    repo = write_model(tmp_path / "repo", 1)
    git("init", "-q", "-b", "main", cwd=repo)
    git("add", "predict.py", cwd=repo)
    git("commit", "-q", "-m", "v1", cwd=repo)
    result = trainml(control_plane, "job", "create", "endpoint", "live", "--git-uri", str(repo), "--git-ref", "main",
                     "--route", json.dumps(route()))
    assert result.returncode == 0, result.stderr
    url = result.stdout.split("Endpoint is running at: ")[1].split()[0]
    write_model(repo, 2)
    git("commit", "-q", "-am", "v2", cwd=repo)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    result = trainml(control_plane, "job", "update", "live")
    assert result.returncode == 0, result.stderr
    assert requests.post(url + "/predict", json={"text": "x"}, timeout=10).json()["version"] == 2
    rows = revisions(control_plane)
    assert [(r["revision"], r["status"]) for r in rows] == [(1, "retired"), (2, "serving")]
    assert rows[1]["git_commit"] == head and rows[0]["git_commit"] != head
    assert f"@main ({head[:12]})" in rows[1]["source"]
    # Rolled back, the first commit's code serves again from its kept folder, not from the repository.
    assert trainml(control_plane, "job", "rollback", "live").returncode == 0
    assert requests.post(url + "/predict", json={"text": "x"}, timeout=10).json()["version"] == 1

    folder = write_model(tmp_path / "local", 1)
    local_url = create(control_plane, folder, name="local")
    write_model(folder, 2)  # not sent: an update without --model-dir redeploys the code the job has
    result = trainml(control_plane, "job", "update", "local", "--env", "GREETING=hi")
    assert result.returncode == 0, result.stderr
    assert requests.post(local_url + "/predict", json={"text": "x"}, timeout=10).json()["version"] == 1
    assert [(r["revision"], r["status"]) for r in revisions(control_plane, "local")] == [(1, "retired"),
                                                                                         (2, "serving")]


@pytest.mark.parametrize("recorded", [True, False], ids=["recorded", "killed-before-the-record"])
def test_a_control_plane_killed_mid_update_leaves_no_process_behind_and_the_revision_failed(start_control_plane,
                                                                                         tmp_path, recorded):
    plane = start_control_plane()
    url = create(plane, write_model(tmp_path / "v1", 1))
    pids_before = set(plane.endpoint_pids())
    slow = write_model(tmp_path / "slow", 2, load_seconds=30.0)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TRAINML_HOME": str(plane.home),
           "TRAINML_API_URL": plane.url, "NO_COLOR": "1", "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    update = subprocess.Popen([sys.executable, "-m", "trainml_cli", "job", "update", "live", "--model-dir", str(slow)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        wait_until(lambda: set(plane.endpoint_pids()) - pids_before, 60, message="the new revision's process")
        plane.kill()
    finally:
        update.wait(timeout=60)
    if not recorded:  # what a kill between starting the process and recording its pid leaves in the database
        import sqlite3

        with sqlite3.connect(plane.home / "trainml.db") as db:
            source = json.loads(db.execute("SELECT source FROM revisions WHERE number = 2").fetchone()[0])
            assert source.pop("pid") and source.pop("pid_start")
            db.execute("UPDATE revisions SET source = ? WHERE number = 2", (json.dumps(source),))
    again = start_control_plane(home=plane.home)
    wait_until(lambda: set(again.endpoint_pids()) <= pids_before, 60, message="the new revision's process to end")
    rows = revisions(again)
    assert [(r["revision"], r["status"]) for r in rows] == [(1, "serving"), (2, "failed")]
    assert "control plane stopped" in rows[1]["reason"]
    assert requests.post(url + "/predict", json={"text": "x"}, timeout=10).json()["version"] == 1


def test_a_revisions_process_started_but_never_recorded_is_found_by_its_model_folder_and_ended(tmp_path):
    # A control plane killed between starting a new revision's process and recording its pid (the test above
    # hit that window now and then): the next one finds the process by the revision's model folder.
    import shutil

    import endpoint_process
    from trainml_cli.server.processes import process_start_time, reap_orphans, runtimes_naming

    folders = [tmp_path / name / "model" for name in ("revisions-2", "other")]
    for folder in folders:
        shutil.copytree(endpoint_process.MODELS / "echo", folder)
    echo = endpoint_process.route("/predict", "predict", [endpoint_process.param("text", "str")])
    orphan, other = (endpoint_process.start(folder, [echo], tmp_path=tmp_path) for folder in folders)
    try:
        orphan.wait_ready()
        other.wait_ready()
        assert runtimes_naming(str(folders[0])) == [orphan.proc.pid]
        run(reap_orphans(orphan.proc.pid, process_start_time(orphan.proc.pid), grace=10))
        assert orphan.proc.wait(timeout=10) is not None and runtimes_naming(str(folders[0])) == []
        assert other.proc.poll() is None and runtimes_naming(str(folders[1])) == [other.proc.pid]
    finally:
        orphan.stop()
        other.stop()


def test_stopping_the_job_during_an_update_fails_the_revision_and_ends_both_processes(control_plane, tmp_path):
    create(control_plane, write_model(tmp_path / "v1", 1))
    pids_before = set(control_plane.endpoint_pids())
    slow = write_model(tmp_path / "slow", 2, load_seconds=30.0)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TRAINML_HOME": str(control_plane.home),
           "TRAINML_API_URL": control_plane.url, "NO_COLOR": "1", "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    update = subprocess.Popen([sys.executable, "-m", "trainml_cli", "job", "update", "live", "--model-dir", str(slow)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        wait_until(lambda: set(control_plane.endpoint_pids()) - pids_before, 60, message="the new revision's process")
        stopped = trainml(control_plane, "job", "stop", "live")
        assert stopped.returncode == 0, stopped.stderr
    finally:
        out, err = update.communicate(timeout=120)
    assert update.returncode == 1 and "revision 2 of job live failed: the job was stopped" in err, out + err
    assert control_plane.endpoint_pids() == []
    assert [(r["revision"], r["status"]) for r in revisions(control_plane)] == [(1, "serving"), (2, "failed")]


def test_an_update_to_two_worker_processes_switches_once_both_have_loaded(control_plane, tmp_path):
    folder = write_model(tmp_path / "model", 1)
    url = create(control_plane, folder)
    with Load(url) as load:
        wait_until(lambda: load.count_since(0) >= 30, 60, message="calls before the update")
        write_model(folder, 2, load_seconds=1.0)
        result = trainml(control_plane, "job", "update", "live", "--model-dir", str(folder), "--replicas", "2")
        returned = time.monotonic()
        assert result.returncode == 0, result.stdout + result.stderr
        wait_until(lambda: load.count_since(returned) >= 50, 60, message="calls after the update")
    assert load.failures == []
    assert {version for sent, version in load.answers if sent > returned} == {2}
    assert revisions(control_plane)[-1]["replicas"] == 2
    job = control_plane.api("GET", "/api/jobs/live").json()
    assert job["endpoint"]["replicas"] == 2 and job["pid"] in control_plane.endpoint_pids()
    assert len(control_plane.endpoint_pids()) == 3  # the new revision's supervisor and its two workers


def write_printing_model(folder, version, load_seconds=0.0):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "predict.py").write_text("\n".join([
        "import time", f"print('loading version {version}', flush=True)", f"time.sleep({load_seconds})", "",
        "def predict(text):", f"    print('answer from version {version}', flush=True)",
        f"    return {{'version': {version}, 'echo': text}}", ""]))
    return folder


def test_log_lines_say_which_revision_printed_them_while_both_print_during_a_switch(control_plane, tmp_path):
    """The old revision answers (and prints) while the new one loads beside it: each line is tagged by the
    process that printed it, not by when; a rollback's lines are the old revision's again."""
    url = create(control_plane, write_printing_model(tmp_path / "v1", 1))
    with Load(url) as load:
        wait_until(lambda: load.count_since(0) >= 30, 60, message="calls before the update")
        result = trainml(control_plane, "job", "update", "live", "--model-dir",
                         str(write_printing_model(tmp_path / "v2", 2, load_seconds=1.0)))
        assert result.returncode == 0, result.stdout + result.stderr
        returned = time.monotonic()
        wait_until(lambda: load.count_since(returned) >= 30, 60, message="calls after the update")
        result = trainml(control_plane, "job", "rollback", "live")
        assert result.returncode == 0, result.stdout + result.stderr
        returned = time.monotonic()
        wait_until(lambda: load.count_since(returned) >= 30, 60, message="calls after the rollback")
    assert load.failures == []

    def printed():
        result = trainml(control_plane, "job", "logs", "live", "--format", "json")
        assert result.returncode == 0, result.stderr
        return [json.loads(line) for line in result.stdout.splitlines()]

    wait_until(lambda: sum("loading version 1" in e["message"] for e in printed()) == 2, 30,
               message="the rollback's load line in the log")
    entries = printed()
    tagged = {}
    for entry in entries:
        for version in (1, 2):
            if entry["message"] in (f"loading version {version}", f"answer from version {version}"):
                tagged.setdefault(version, set()).add(entry["revision"])
    assert tagged == {1: {1}, 2: {2}}, tagged
    assert all(e["revision"] is None for e in entries if e["stream"] == "event")
    # Both printed answers during the switch: version 1's answers went on after version 2 began loading.
    messages = [e["message"] for e in entries]
    began = messages.index("loading version 2")
    rolled_back = messages.index("loading version 1", began)
    assert "answer from version 1" in messages[began:rolled_back]
    text = trainml(control_plane, "job", "logs", "live").stdout.splitlines()
    assert "[r1] loading version 1" in text and "[r2] loading version 2" in text
