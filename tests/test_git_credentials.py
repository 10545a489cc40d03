"""Git credentials at rest and in flight, against the real control plane and a real git host on loopback.

The host is `git http-backend` (git's own smart-HTTP server, a CGI program) behind python's http.server with
Basic auth: a clone succeeds only when git sends the right credentials, and a clone can be held at its first
pack request while the test looks at every process's command line.
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import sqlite3
import stat
import subprocess
import threading
from pathlib import Path

import pytest

from conftest import route, run, wait_until
from test_sources import git
from trainml_cli.errors import JobFailed

PASSWORD = "s3cret-pass"
TOKEN = "ghp_t0kenSecret"
# The model reads its own clone's .git/config: what model code could find in its folder.
GITCONFIG_CODE = ("import os\n\n\ndef predict(text):\n"
                  "    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), '.git', 'config')\n"
                  "    if not os.path.exists(path):\n"
                  "        return {'config': None}\n"
                  "    with open(path) as f:\n"
                  "        return {'config': f.read()}\n")
ROUTES = {"routes": [route()]}


class GitHost(http.server.ThreadingHTTPServer):
    """Serves the repositories under `root` with `git http-backend` to callers that send one of `accepted`
    (user:password pairs); the first pack request waits for `gate` once `hold` is set."""

    def __init__(self, root: Path, accepted: set[str]):
        super().__init__(("127.0.0.1", 0), _GitHandler)
        self.root = root
        self.accepted = {"Basic " + base64.b64encode(pair.encode()).decode() for pair in accepted}
        self.seen: list[str] = []
        self.hold = False
        self.waiting = threading.Event()
        self.gate = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _GitHandler(http.server.BaseHTTPRequestHandler):
    server: GitHost

    def do_GET(self):
        self._serve()

    def do_POST(self):
        self._serve()

    def _serve(self):
        auth = self.headers.get("Authorization") or ""
        self.server.seen.append(auth)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if auth not in self.server.accepted:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.command == "POST" and self.server.hold:
            self.server.waiting.set()
            self.server.gate.wait(60)
        path, _, query = self.path.partition("?")
        env = {"PATH": os.environ["PATH"], "GIT_PROJECT_ROOT": str(self.server.root), "GIT_HTTP_EXPORT_ALL": "1",
               "PATH_INFO": path, "QUERY_STRING": query, "REQUEST_METHOD": self.command, "REMOTE_ADDR": "127.0.0.1",
               "CONTENT_TYPE": self.headers.get("Content-Type") or "", "CONTENT_LENGTH": str(len(body))}
        for header in ("Content-Encoding", "Git-Protocol"):
            if self.headers.get(header):
                env["HTTP_" + header.upper().replace("-", "_")] = self.headers[header]
        output = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, timeout=60).stdout
        ends = [(output.find(sep), sep) for sep in (b"\r\n\r\n", b"\n\n") if sep in output]
        at, sep = min(ends)  # CGI headers end at the first blank line
        head, payload = output[:at], output[at + len(sep):]
        status, headers = 200, []
        for line in head.decode().splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def git_host(tmp_path):
    """A repository whose model prints its own .git/config, served over HTTP to alice:PASSWORD and to TOKEN."""
    root = tmp_path / "served"
    repo = root / "private.git"
    repo.mkdir(parents=True)
    git("init", "-q", "-b", "main", cwd=repo)
    (repo / "predict.py").write_text(GITCONFIG_CODE)
    git("add", "predict.py", cwd=repo)
    git("commit", "-q", "-m", "reads its git config", cwd=repo)
    server = GitHost(root, {f"alice:{PASSWORD}", f"{TOKEN}:"})
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.gate.set()
    server.shutdown()
    server.server_close()


def files_holding(home: Path, secret: str) -> dict[Path, int]:
    """Every file under home whose bytes hold `secret`, with its mode."""
    found = {}
    for folder, _dirs, files in os.walk(home):
        for name in files:
            path = Path(folder) / name
            try:
                if not path.is_symlink() and secret.encode() in path.read_bytes():
                    found[path] = stat.S_IMODE(path.stat().st_mode)
            except OSError:
                pass
    return found


def command_lines() -> list[str]:
    lines = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    lines.append(f.read().replace(b"\0", b" ").decode(errors="replace"))
            except OSError:
                pass
    return lines


def assert_private(home: Path, path: Path) -> None:
    """`path` is 0600 and each folder from it up to the home is 0700."""
    assert stat.S_IMODE(path.stat().st_mode) == 0o600, f"{path} is {oct(path.stat().st_mode)}"
    folder = path.parent
    while True:
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, f"{folder} is {oct(folder.stat().st_mode)}"
        if folder == home:
            break
        folder = folder.parent


def test_a_git_password_is_never_on_a_command_line_in_the_model_folder_or_readable_by_others(
        start_control_plane, git_host, tmp_path, monkeypatch):
    # The user's own git configuration keeps what it is given in clear: it must neither answer nor be told.
    saved = tmp_path / "git-credentials-store"
    (tmp_path / "gitconfig").write_text(f"[credential]\n\thelper = store --file {saved}\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "gitconfig"))
    control_plane = start_control_plane()
    uri = f"http://alice:{PASSWORD}@127.0.0.1:{git_host.server_address[1]}/private.git"
    git_host.hold = True
    job = control_plane.api("POST", "/api/jobs", json={"name": "private", "endpoint": ROUTES,
                                                       "model": {"source_type": "git", "source_uri": uri}}).json()
    assert job["model"]["source_uri"] == uri.replace(PASSWORD, "***")
    assert git_host.waiting.wait(60), "the clone never asked for the pack"
    # The clone is under way (held by the host): git and its helpers are running now.
    running = command_lines()
    assert any(f"127.0.0.1:{git_host.server_address[1]}" in line and "git" in line for line in running), running
    assert not [line for line in running if PASSWORD in line]
    git_host.gate.set()
    wait_until(lambda: control_plane.api("GET", f"/api/jobs/{job['id']}").json()["status"] == "running", timeout=90,
               message="the job to run")
    # The host let the clone in with alice's password: the credentials reached git.
    assert "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode() in git_host.seen
    assert not saved.exists() or PASSWORD not in saved.read_text()

    async def read_config():
        async with control_plane.client() as client:
            return await (await client.jobs.get(job["id"])).call("/predict", {"text": "x"})

    config = run(read_config())["config"]
    assert f"127.0.0.1:{git_host.server_address[1]}/private.git" in config and PASSWORD not in config

    home = control_plane.home
    holding = files_holding(home, PASSWORD)
    model = home / "jobs" / job["id"] / "model"
    assert [p for p in holding if model in p.parents] == []
    for path in holding:
        assert_private(home, path)
    for name in ("trainml.db", "trainml.db-wal", "trainml.db-shm", "token"):
        if (home / name).exists():
            assert_private(home, home / name)


def test_a_token_alone_authenticates_and_a_wrong_password_fails_without_showing_it(control_plane, git_host):
    port = git_host.server_address[1]

    async def scenario():
        async with control_plane.client() as client:
            token = await client.jobs.create("token", endpoint=ROUTES, wait=True, model={
                "source_type": "git", "source_uri": f"http://{TOKEN}@127.0.0.1:{port}/private.git"})
            config = (await token.call("/predict", {"text": "x"}))["config"]
            wrong = await client.jobs.create("wrong", endpoint=ROUTES, model={
                "source_type": "git", "source_uri": f"http://alice:not-{PASSWORD}@127.0.0.1:{port}/private.git"})
            with pytest.raises(JobFailed):
                await wrong.wait_for("running", timeout=60)
            await wrong.refresh()
            return config, wrong.reason

    config, reason = run(scenario())
    assert TOKEN not in config
    assert "Authentication failed" in reason and f"not-{PASSWORD}" not in reason, reason
    assert files_holding(control_plane.home, TOKEN), "the token is kept for the job's next clone"
    for path in files_holding(control_plane.home, TOKEN):
        assert_private(control_plane.home, path)


def test_a_stored_model_from_a_git_uri_with_a_password_keeps_no_credentials(control_plane, git_host):
    uri = f"http://alice:{PASSWORD}@127.0.0.1:{git_host.server_address[1]}/private.git"

    async def scenario():
        async with control_plane.client() as client:
            stored = await client.models.create("private-model", source_type="git", source_uri=uri)
            job = await client.jobs.create("from-store", endpoint=ROUTES, wait=True,
                                           model={"source_type": "trainml", "source_uri": "private-model"})
            return stored.dict, (await job.call("/predict", {"text": "x"}))["config"]

    stored, config = run(scenario())
    assert stored["source_uri"] == uri.replace(PASSWORD, "***") and stored["git_commit"]
    assert config is None, "a stored model keeps no .git folder at all"
    assert files_holding(control_plane.home, PASSWORD) == {}  # used for the clone, then gone


def test_credentials_an_earlier_version_kept_in_clear_are_moved_out_on_start(start_control_plane, git_host):
    """An earlier version kept the full URI in trainml.db (mode 0644) and git wrote it into the clone's
    .git/config; the next start moves it to a private file, scrubs the clone and the database, fixes modes."""
    plane = start_control_plane()
    port = git_host.server_address[1]
    uri = f"http://alice:{PASSWORD}@127.0.0.1:{port}/private.git"
    job = plane.api("POST", "/api/jobs", json={"name": "old", "endpoint": ROUTES,
                                               "model": {"source_type": "git", "source_uri": uri}}).json()
    wait_until(lambda: plane.api("GET", f"/api/jobs/{job['id']}").json()["status"] == "running", timeout=90,
               message="the job to run")
    plane.stop()
    # What the earlier version left: the URI in the job's secrets column and in the clone's remote.
    home = plane.home
    model = home / "jobs" / job["id"] / "model"
    subprocess.run(["git", "-C", str(model), "remote", "set-url", "origin", uri], check=True)
    db = sqlite3.connect(home / "trainml.db")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("UPDATE jobs SET secrets = ? WHERE id = ?", (json.dumps({"source_uri": uri}), job["id"]))
    db.commit()
    db.close()
    os.chmod(home, 0o755)
    for path in home.glob("trainml.db*"):
        os.chmod(path, 0o644)
    for kept in (home / "git-credentials").iterdir():  # which that version did not have
        kept.unlink()
    assert files_holding(home, PASSWORD).keys() >= {home / "trainml.db", model / ".git" / "config"}

    plane.start()
    holding = files_holding(home, PASSWORD)
    assert holding and [p for p in holding if model in p.parents or p.name.startswith("trainml.db")] == []
    for path in [*holding, home / "trainml.db"]:
        assert_private(home, path)
    # The moved credentials still clone: the job fetches its code again after losing its folder.
    assert plane.api("POST", f"/api/jobs/{job['id']}/stop").status_code == 200
    wait_until(lambda: plane.api("GET", f"/api/jobs/{job['id']}").json()["status"] == "stopped", timeout=30,
               message="the job to stop")
    subprocess.run(["rm", "-rf", str(model)], check=True)
    seen = len(git_host.seen)
    assert plane.api("POST", f"/api/jobs/{job['id']}/start").status_code == 200
    wait_until(lambda: plane.api("GET", f"/api/jobs/{job['id']}").json()["status"] == "running", timeout=90,
               message="the job to run again")
    assert "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode() in git_host.seen[seen:]


def test_credentials_that_would_add_lines_to_gits_credential_answer_are_refused(control_plane):
    uri = "http://alice:pw%0Ahost=elsewhere@127.0.0.1:9/private.git"
    response = control_plane.api("POST", "/api/jobs", json={"name": "x", "endpoint": ROUTES,
                                                            "model": {"source_type": "git", "source_uri": uri}})
    assert response.status_code == 422, response.text
    message = response.json()["message"]
    assert "model.source_uri" in message and "control character" in message and "elsewhere" not in message
    assert control_plane.api("GET", "/api/jobs").json() == []
