"""Model sources against the real control plane: uploads (and unsafe archives), git (file:// and git daemon),
stored models; and how the SDK packs a local folder."""

from __future__ import annotations

import base64
import gzip
import http.server
import io
import json
import os
import socket
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest

from conftest import MODELS, processes_mentioning, route, run, wait_until
from trainml_cli.errors import Conflict, JobFailed, NotFound, UsageError
from trainml_cli.packing import files_to_pack, pack

ECHO_ROUTES = {"routes": [route()]}
ECHO_CODE = (MODELS / "echo" / "predict.py").read_text()


def git(*args, cwd):
    subprocess.run(["git", "-c", "user.name=test", "-c", "user.email=test@example.com", *args], cwd=cwd, check=True,
                   capture_output=True)


@pytest.fixture
def repo(tmp_path) -> Path:
    """A git repository with the echo model on main and a `shout` branch whose model answers in capitals."""
    path = tmp_path / "repos" / "echo.git"
    path.mkdir(parents=True)
    git("init", "-q", "-b", "main", cwd=path)
    (path / "predict.py").write_text(ECHO_CODE)
    git("add", "predict.py", cwd=path)
    git("commit", "-q", "-m", "echo", cwd=path)
    git("checkout", "-q", "-b", "shout", cwd=path)
    (path / "predict.py").write_text("def predict(text):\n    return {'echo': text.upper()}\n")
    git("commit", "-q", "-am", "shout", cwd=path)
    git("checkout", "-q", "main", cwd=path)
    return path


@pytest.fixture
def git_daemon(repo):
    """`git daemon` serving the repo's parent folder on a free loopback port; yields the git:// base URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base = repo.parent
    daemon = subprocess.Popen(
        ["git", "daemon", "--export-all", "--reuseaddr", f"--base-path={base}", "--listen=127.0.0.1",
         f"--port={port}", str(base)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )

    def accepting():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            return False

    try:
        wait_until(accepting, 10, message="git daemon")
        yield f"git://127.0.0.1:{port}"
    finally:
        os.killpg(daemon.pid, 9)
        daemon.wait()


def test_git_over_file_uri_with_and_without_ref(control_plane, repo):
    async def scenario():
        async with control_plane.client() as client:
            plain = await client.jobs.create("g1", model={"source_type": "git", "source_uri": repo.as_uri()},
                                             endpoint=ECHO_ROUTES, wait=True)
            assert await plain.call("/predict", {"text": "hi"}) == {"echo": "hi"}
            assert len(plain.dict["model"]["git_commit"]) == 40
            shout = await client.jobs.create("g2",
                                             model={"source_type": "git", "source_uri": repo.as_uri(),
                                                    "git_ref": "shout"},
                                             endpoint=ECHO_ROUTES, wait=True)
            assert await shout.call("/predict", {"text": "hi"}) == {"echo": "HI"}
            clone_lines = [e["message"] async for e in shout.logs() if e["message"].startswith("git: ")]
            assert clone_lines[0].startswith("git: $ git clone --depth 1 --branch shout -- file://")
            # A local path is sent as a file:// URI by the SDK
            by_path = await client.jobs.create("g3", model={"source_type": "git", "source_uri": str(repo)},
                                               endpoint=ECHO_ROUTES)
            assert by_path.dict["model"]["source_uri"] == repo.as_uri()
            for job in (plain, shout, by_path):
                await job.remove(force=True)

    run(scenario())


def test_git_over_git_daemon(control_plane, git_daemon):
    async def scenario():
        async with control_plane.client() as client:
            job = await client.jobs.create("daemon",
                                           model={"source_type": "git", "source_uri": f"{git_daemon}/echo.git"},
                                           endpoint=ECHO_ROUTES, wait=True)
            assert await job.call("/predict", {"text": "over git://"}) == {"echo": "over git://"}
            await job.remove(force=True)

    run(scenario())


def test_a_failed_clone_fails_the_job_with_gits_message(control_plane, repo, tmp_path):
    async def scenario():
        async with control_plane.client() as client:
            (tmp_path / "plain").mkdir()  # a folder, not a repository (one that is not there is refused at create)
            missing = await client.jobs.create("nope", endpoint=ECHO_ROUTES,
                                               model={"source_type": "git",
                                                      "source_uri": (tmp_path / "plain").as_uri()})
            with pytest.raises(JobFailed):
                await missing.wait_for("running", timeout=60)
            assert "git clone" in missing.reason and "does not appear to be a git repository" in missing.reason
            bad_ref = await client.jobs.create("badref", endpoint=ECHO_ROUTES,
                                               model={"source_type": "git", "source_uri": repo.as_uri(),
                                                      "git_ref": "nosuch"})
            with pytest.raises(JobFailed):
                await bad_ref.wait_for("running", timeout=60)
            # git's fatal line, not the warning it prints first (that one is in the log with the rest)
            assert bad_ref.reason.endswith("failed: fatal: Remote branch nosuch not found in upstream origin"), \
                bad_ref.reason
            assert "does not appear to be a git repository" in missing.reason.splitlines()[0]
            assert "Please make sure" not in missing.reason
            log = [e["message"] async for e in bad_ref.logs()]
            assert "git: warning: Could not find remote branch nosuch to clone." in log

    run(scenario())


def test_a_password_in_a_git_uri_stays_out_of_the_log_and_the_reason(control_plane):
    with socket.socket() as closed:  # bound, never listening: the clone is refused at once
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        uri = f"http://user:s3cret-token@127.0.0.1:{port}/models.git"

        async def scenario():
            async with control_plane.client() as client:
                job = await client.jobs.create("private", endpoint=ECHO_ROUTES,
                                               model={"source_type": "git", "source_uri": uri})
                with pytest.raises(JobFailed):
                    await job.wait_for("running", timeout=60)
                lines = [entry["message"] async for entry in job.logs()]
                return job.reason, lines

        reason, lines = run(scenario())
    assert "user:***@127.0.0.1" in "\n".join(lines)
    assert "s3cret-token" not in reason and not any("s3cret-token" in line for line in lines)


@pytest.mark.parametrize("uri, message", [
    ("--upload-pack=touch /tmp/pwned", "starts with '-'"),
    ("-oProxyCommand=x", "starts with '-'"),
    ("ext::sh -c touch% /tmp/pwned", "is not a git URI"),
    ("ftp://example.com/repo.git", "only https, http, ssh, git, file URIs are allowed"),
    ("/some/local/path/that/does/not/exist", "write file:///some/local/path"),
], ids=["upload-pack", "ssh-option", "ext-transport", "ftp", "bare-path"])
def test_unsafe_git_uris_are_refused_and_nothing_is_created(shared_plane, uri, message):
    payload = {"name": "x", "model": {"source_type": "git", "source_uri": uri}, "endpoint": ECHO_ROUTES}
    response = shared_plane.api("POST", "/api/jobs", json=payload)
    assert response.status_code == 422
    assert message in response.json()["message"]
    assert "model.source_uri" in response.json()["message"]
    assert shared_plane.api("GET", "/api/jobs").json() == []
    response = shared_plane.api("POST", "/api/models", json={"name": "m", "source_type": "git", "source_uri": uri})
    assert response.status_code == 422
    assert shared_plane.api("GET", "/api/models").json() == []


def test_git_refs_that_look_like_options_are_refused(shared_plane, repo):
    payload = {"name": "x", "model": {"source_type": "git", "source_uri": repo.as_uri(), "git_ref": "--upload-pack=x"},
               "endpoint": ECHO_ROUTES}
    response = shared_plane.api("POST", "/api/jobs", json=payload)
    assert response.status_code == 422
    assert "model.git_ref" in response.json()["message"]


def archive(*members: tarfile.TarInfo, data: bytes = b"x = 1\n") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        ok = tarfile.TarInfo("predict.py")
        ok.size = len(data)
        tar.addfile(ok, io.BytesIO(data))
        for member in members:
            tar.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return buffer.getvalue()


def member(name: str, kind=tarfile.REGTYPE, linkname: str = "", size: int = 6) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.size = size if kind == tarfile.REGTYPE else 0
    return info


@pytest.mark.parametrize("bad, message", [
    (member("../evil.py"), "'..' would place it outside"),
    (member("pkg/../../evil.py"), "'..' would place it outside"),
    (member("/etc/evil.py"), "absolute paths are refused"),
    (member("link.py", tarfile.SYMTYPE, "/etc/passwd"), "links are refused"),
    (member("inside.py", tarfile.SYMTYPE, "predict.py"), "links are refused"),
    (member("hard.py", tarfile.LNKTYPE, "predict.py"), "links are refused"),
    (member("dev", tarfile.CHRTYPE), "devices and fifos are refused"),
    (member("pipe", tarfile.FIFOTYPE), "devices and fifos are refused"),
], ids=["dotdot", "nested-dotdot", "absolute", "symlink-out", "symlink-in", "hardlink", "device", "fifo"])
def test_unsafe_archives_are_refused(shared_plane, bad, message):
    response = shared_plane.api("POST", "/api/uploads", data=archive(bad),
                                headers={"Content-Type": "application/gzip"})
    assert response.status_code == 422, response.text
    assert message in response.json()["message"]
    assert bad.name in response.json()["message"]
    assert list((shared_plane.home / "uploads").iterdir()) == []
    assert not (shared_plane.home.parent / "evil.py").exists() and not (shared_plane.home / "evil.py").exists()


def test_garbage_uploads_are_refused(shared_plane):
    response = shared_plane.api("POST", "/api/uploads", data=b"not a tarball")
    assert response.status_code == 422
    assert "not a valid tar.gz" in response.json()["message"]
    assert shared_plane.api("POST", "/api/uploads", data=b"").status_code == 422


def zipped(*members: tuple[str, bytes | None, int]) -> bytes:
    """A zip of (name, data or None for a folder, unix mode) members, as any zip tool writes them."""
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data, mode in members:
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            archive.writestr(info, data or b"")
    return buffer.getvalue()


def test_a_zip_upload_is_converted_and_unpacked_like_a_tar_gz(control_plane):
    import stat

    code = (MODELS / "echo" / "predict.py").read_bytes()
    body = zipped(("pkg/", None, stat.S_IFDIR | 0o755), ("predict.py", code, stat.S_IFREG | 0o644),
                  ("pkg\\helper.py", b"X = 1\n", stat.S_IFREG | 0o644), ("__MACOSX/._predict.py", b"junk", 0o644))
    response = control_plane.api("POST", "/api/uploads", data=body, headers={"Content-Type": "application/zip"})
    assert response.status_code == 201, response.text
    assert response.json()["files"] == 2  # predict.py and pkg/helper.py; the macOS resource fork is left out
    payload = {"name": "zipped", "model": {"source_type": "local", "upload_id": response.json()["id"]},
               "endpoint": ECHO_ROUTES}
    job = control_plane.api("POST", "/api/jobs", json=payload).json()
    record = control_plane.api("GET", f"/api/jobs/{job['id']}/wait", params={"status": "running", "timeout": 60}).json()
    assert record["status"] == "running", record
    assert (control_plane.home / "jobs" / job["id"] / "model" / "pkg" / "helper.py").read_text() == "X = 1\n"
    assert control_plane.api("DELETE", f"/api/jobs/{job['id']}", params={"force": "true"}).status_code == 200


@pytest.mark.parametrize("bad, message", [
    (("../evil.py", b"x", 0o100644), "'..' would place it outside"),
    (("/etc/evil.py", b"x", 0o100644), "absolute paths are refused"),
    (("link.py", b"/etc/passwd", 0o120777), "links are refused"),
], ids=["dotdot", "absolute", "symlink"])
def test_unsafe_zips_are_refused(shared_plane, bad, message):
    response = shared_plane.api("POST", "/api/uploads", data=zipped(bad))
    assert response.status_code == 422, response.text
    assert message in response.json()["message"] and bad[0] in response.json()["message"]
    assert list((shared_plane.home / "uploads").iterdir()) == []


def test_a_zip_bomb_stops_at_the_bytes_inflated():
    import tempfile

    from trainml_cli.server.zipped import zip_to_tar_gz

    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "bomb.zip"
        source.write_bytes(zipped(("zeros.bin", bytes(4 * 1024 * 1024), 0o100644)))
        with pytest.raises(UsageError, match="more than 1 MiB unpacked"):
            zip_to_tar_gz(source, Path(folder) / "out.tar.gz", max_bytes=1024 * 1024)


def test_a_job_needs_a_real_upload(shared_plane):
    payload = {"name": "x", "model": {"source_type": "local", "upload_id": "0" * 32}, "endpoint": ECHO_ROUTES}
    response = shared_plane.api("POST", "/api/jobs", json=payload)
    assert response.status_code == 404
    assert "upload" in response.json()["message"]


def test_stored_models_from_a_folder_and_from_git(control_plane, repo):
    async def scenario():
        async with control_plane.client() as client:
            stored = await client.models.create("echo-model", source_type="local", source_uri=str(MODELS / "echo"))
            assert stored.size > 0 and stored.source_type == "local"
            from_git = await client.models.create("git-model", source_type="git", source_uri=repo.as_uri(),
                                                  git_ref="shout")
            assert from_git.dict["git_commit"]
            assert sorted(m.name for m in await client.models.list()) == ["echo-model", "git-model"]
            assert (await client.models.get("echo-model")).id == stored.id
            with pytest.raises(Conflict, match="already exists"):
                await client.models.create("echo-model", source_type="local", source_uri=str(MODELS / "echo"))

            job = await client.jobs.create("from-store", model={"source_type": "trainml", "source_uri": "git-model"},
                                           endpoint=ECHO_ROUTES, wait=True)
            assert await job.call("/predict", {"text": "stored"}) == {"echo": "STORED"}
            await client.models.remove("git-model")  # the job keeps its own copy
            with pytest.raises(NotFound):
                await client.models.get("git-model")
            await job.stop()
            await job.start()
            await job.wait_for("running", timeout=60)
            assert await job.call("/predict", {"text": "still"}) == {"echo": "STILL"}
            await job.remove(force=True)
            assert (await client.models.get(stored.id)).name == "echo-model"  # removing a job keeps models

            with pytest.raises(UsageError, match="no folder .*/nothing on the control plane's machine"):
                await client.models.create("broken", source_type="git", source_uri=(repo.parent / "nothing").as_uri())
            (repo.parent / "plain").mkdir()  # a folder, not a repository: refused with git's message
            with pytest.raises(UsageError, match="does not appear to be a git repository"):
                await client.models.create("broken", source_type="git", source_uri=(repo.parent / "plain").as_uri())
            assert sorted(m.name for m in await client.models.list()) == ["echo-model"]

    run(scenario())


def test_packing_skips_git_caches_and_virtualenvs(tmp_path):
    root = tmp_path / "model"
    for path in ["predict.py", "pkg/util.py", ".git/HEAD", "__pycache__/x.pyc", "pkg/__pycache__/y.pyc",
                 ".venv/bin/python", "venv/lib/z.py", "myenv/pyvenv.cfg", "myenv/lib/w.py", "weights/w.bin"]:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text("x")
    (root / "linked.bin").symlink_to(root / "weights" / "w.bin")
    (root / "dangling").symlink_to(root / "nowhere")
    (root / "linked_dir").symlink_to(root / "pkg")
    names = sorted(name for _, name in files_to_pack(root))
    assert names == ["linked.bin", "pkg", "pkg/util.py", "predict.py", "weights", "weights/w.bin"]
    with tarfile.open(fileobj=pack(root), mode="r:gz") as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert sorted(members) == names
    assert members["linked.bin"].isfile()  # packed as the file it points to: the server refuses links
    assert all(m.isfile() or m.isdir() for m in members.values())


@pytest.mark.parametrize("target", ["file", "folder", "dangling", "relative"])
def test_packing_refuses_a_symbolic_link_out_of_the_folder_naming_it(tmp_path, target):
    root = tmp_path / "model"
    (root / "pkg").mkdir(parents=True)
    (root / "predict.py").write_text(ECHO_CODE)
    (tmp_path / "secret.txt").write_text("operator's secret\n")
    (tmp_path / "cache").mkdir()
    link = root / "pkg" / "weights"
    link.symlink_to({"file": tmp_path / "secret.txt", "folder": tmp_path / "cache", "dangling": tmp_path / "gone",
                     "relative": Path("..") / ".." / "secret.txt"}[target])
    with pytest.raises(UsageError, match=r"pkg/weights is a symbolic link to .*, outside the folder"):
        pack(root)


def test_the_sdk_refuses_a_link_out_of_the_folder_before_any_upload_and_a_link_inside_still_works(control_plane,
                                                                                                   tmp_path):
    root = tmp_path / "model"
    (root / "impl").mkdir(parents=True)
    (root / "impl" / "echo.py").write_text(ECHO_CODE)
    (root / "predict.py").symlink_to(Path("impl") / "echo.py")  # inside: packed as the file's content
    (root / "alias").symlink_to(root / "impl")  # a folder inside: left out, as before
    (tmp_path / "credentials").write_text("aws_secret_access_key = x\n")
    model = {"source_type": "local", "source_uri": str(root)}

    async def scenario():
        async with control_plane.client() as client:
            (root / "creds").symlink_to(tmp_path / "credentials")
            with pytest.raises(UsageError, match="creds is a symbolic link to .*credentials, outside the folder"):
                await client.jobs.create("escapes", model=model, endpoint=ECHO_ROUTES)
            with pytest.raises(UsageError, match="creds is a symbolic link"):
                await client.models.create("escapes", source_type="local", source_uri=str(root))
            assert await client.jobs.list() == [] and await client.models.list() == []
            assert list((control_plane.home / "uploads").iterdir()) == []  # nothing was sent

            (root / "creds").unlink()
            job = await client.jobs.create("inside", model=model, endpoint=ECHO_ROUTES, wait=True)
            assert await job.call("/predict", {"text": "linked"}) == {"echo": "linked"}
            folder = control_plane.home / "jobs" / job.id / "model"
            assert not (folder / "predict.py").is_symlink() and (folder / "predict.py").read_text() == ECHO_CODE
            assert not (folder / "alias").exists()
            await job.remove(force=True)

    run(scenario())


def test_a_local_folder_upload_lands_only_inside_the_job(control_plane):
    async def scenario():
        async with control_plane.client() as client:
            job = await client.jobs.create("echo", model={"source_type": "local", "source_uri": str(MODELS / "echo")},
                                           endpoint=ECHO_ROUTES, wait=True)
            folder = control_plane.home / "jobs" / job.id / "model"
            assert (folder / "predict.py").read_text() == ECHO_CODE
            assert list((control_plane.home / "uploads").iterdir()) == []  # consumed
            await job.remove(force=True)

    run(scenario())


def _raw_archive(*blocks: bytes) -> bytes:
    """A tar.gz of hand-made blocks (header bytes and data), ended as tar ends; gzip makes padding cost nothing."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb") as out:
        for block in blocks:
            out.write(block + b"\0" * (-len(block) % 512))
        out.write(b"\0" * 1024)
    return buffer.getvalue()


def _header(name: str, kind: bytes, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.type, info.size = kind, size
    return info.tobuf(format=tarfile.USTAR_FORMAT)


def _long_name(size: int) -> list[bytes]:
    return [_header("././@LongLink", tarfile.GNUTYPE_LONGNAME, size), b"a" * size, _header("x", tarfile.REGTYPE, 0)]


def _pax(records: bytes) -> list[bytes]:
    return [_header("././@PaxHeader", tarfile.XHDTYPE, len(records)), records]


def _pax_record(key: str, value: str) -> bytes:
    body = f" {key}={value}\n".encode()
    length = len(body) + len(str(len(body)))
    length = len(body) + len(str(length))
    return str(length).encode() + body


@pytest.mark.parametrize("blocks, message", [
    # tarfile reads a long-name header whole: 16 KB of gzip would ask for 16 MiB (and 2 MB for 2 GiB).
    (_long_name(16 * 1024**2), "extended header of 16777216 bytes is refused"),
    # CPython < 3.11.10 parses a pax header of digits in quadratic time (CVE-2024-6232): 1 MiB is hours.
    (_pax(b"1" * 1024**2) + [_header("x", tarfile.REGTYPE, 0)], "extended header of 1048576 bytes is refused"),
    # A GNU 1.0 sparse map is read number by number from the data: a billion of them is a memory bomb.
    (_pax(_pax_record("GNU.sparse.major", "1") + _pax_record("GNU.sparse.minor", "0"))
     + [_header("x", tarfile.REGTYPE, 0), b"1000000000\n" + b"1\n" * 100_000], "sparse files are refused"),
    ([_header("old-sparse", tarfile.GNUTYPE_SPARSE, 0)], "sparse files are refused"),
], ids=["huge-long-name", "quadratic-pax", "pax-sparse-map", "gnu-sparse"])
def test_archive_headers_too_big_to_read_are_refused_at_once(shared_plane, blocks, message):
    started = time.monotonic()
    response = shared_plane.api("POST", "/api/uploads", data=_raw_archive(*blocks), timeout=20)
    assert response.status_code == 422, response.text
    assert message in response.json()["message"]
    assert time.monotonic() - started < 5
    assert list((shared_plane.home / "uploads").iterdir()) == []


def test_a_job_writing_its_files_leaves_the_stored_model_as_it_was(control_plane, tmp_path):
    folder = tmp_path / "writer"
    folder.mkdir()
    (folder / "predict.py").write_text(
        "def predict(text):\n    with open('state.txt', 'w') as f:  # in place: same inode\n        f.write(text)\n"
        "    return {'echo': text}\n")
    (folder / "state.txt").write_text("original")

    async def scenario():
        async with control_plane.client() as client:
            stored = await client.models.create("writer", source_type="local", source_uri=str(folder))
            job = await client.jobs.create("writes", model={"source_type": "trainml", "source_uri": "writer"},
                                           endpoint=ECHO_ROUTES, wait=True)
            assert await job.call("/predict", {"text": "changed by the job"}) == {"echo": "changed by the job"}
            assert (control_plane.home / "jobs" / job.id / "model" / "state.txt").read_text() == "changed by the job"
            assert (control_plane.home / "models" / stored.id / "state.txt").read_text() == "original"
            await job.remove(force=True)

    run(scenario())


@pytest.mark.parametrize("first, second", [
    (member("pkg", tarfile.DIRTYPE), member("pkg")),
    (member("pkg"), member("pkg", tarfile.DIRTYPE)),
    (member("pkg"), member("pkg/inner.py")),
], ids=["folder-then-file", "file-then-folder", "file-as-parent"])
def test_a_name_that_is_both_a_file_and_a_folder_is_refused_at_upload(shared_plane, first, second):
    response = shared_plane.api("POST", "/api/uploads", data=archive(first, second))
    assert response.status_code == 422, response.text
    assert "both a file and a folder" in response.json()["message"]
    assert list((shared_plane.home / "uploads").iterdir()) == []


class _AuthRecorder(http.server.BaseHTTPRequestHandler):
    """A git host that asks for credentials and records what it is sent (then knows no repository)."""

    seen: list = []

    def do_GET(self):
        auth = self.headers.get("Authorization")
        type(self).seen.append(auth)
        self.send_response(404 if auth else 401)
        if not auth:
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def git_host():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _AuthRecorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_git_credentials_are_used_by_the_clone_and_shown_nowhere(control_plane, git_host):
    from test_dashboard import signed_in

    secrets = {"user": "alice:s3cret-pass", "token": "ghp_t0ken-secret"}
    uris = {kind: f"http://{secret}@127.0.0.1:{git_host}/models.git" for kind, secret in secrets.items()}

    async def scenario():
        async with control_plane.client() as client:
            jobs = {}
            for kind, uri in uris.items():
                jobs[kind] = job = await client.jobs.create(f"private-{kind}", endpoint=ECHO_ROUTES,
                                                            model={"source_type": "git", "source_uri": uri})
                with pytest.raises(JobFailed):
                    await job.wait_for("running", timeout=60)
            logs = {}
            for kind, job in jobs.items():  # not a dict comprehension: an async one inside it needs Python 3.11
                logs[kind] = [e["message"] async for e in job.logs()]
            return {kind: job.dict for kind, job in jobs.items()}, logs

    records, logs = run(scenario())
    # The clone sent the credentials (git asks for a password it may not prompt for when only a token is given).
    assert base64.b64encode(b"alice:s3cret-pass").decode() in " ".join(a or "" for a in _AuthRecorder.seen)
    assert records["user"]["model"]["source_uri"] == f"http://alice:***@127.0.0.1:{git_host}/models.git"
    assert records["token"]["model"]["source_uri"] == f"http://***@127.0.0.1:{git_host}/models.git"
    env = {**os.environ, "TRAINML_API_URL": control_plane.url, "TRAINML_API_TOKEN": control_plane.token,
           "NO_COLOR": "1"}
    outputs = [json.dumps(records), json.dumps(logs), control_plane.log()]
    for kind in uris:
        for extra in ([], ["--format", "json"]):
            result = subprocess.run([sys.executable, "-m", "trainml_cli", "job", "get", f"private-{kind}", *extra],
                                    env=env, capture_output=True, text=True, timeout=30)
            assert result.returncode == 0, result.stderr
            outputs.append(result.stdout + result.stderr)
    outputs.append(control_plane.api("GET", "/api/jobs").text)
    dashboard = signed_in(control_plane)
    for record in records.values():
        outputs.append(control_plane.api("GET", f"/api/jobs/{record['id']}").text)
        page = dashboard.get(f"{control_plane.url}/dashboard/jobs/{record['id']}", timeout=10)
        assert page.status_code == 200 and "models.git" in page.text
        outputs.append(page.text)
        with dashboard.get(f"{control_plane.url}/api/dashboard/events", params={"job": record["id"]},
                           stream=True, timeout=10) as events:
            for _, line in zip(range(10), events.iter_lines(decode_unicode=True)):
                outputs.append(line)
                if line.startswith("data:"):
                    assert record["id"] in line
                    break
    server_log = control_plane.home / "server.log"
    outputs.append(server_log.read_text() if server_log.exists() else "")
    everything = "\n".join(outputs)
    assert "127.0.0.1" in everything and "***@" in everything
    for secret in ("s3cret-pass", "ghp_t0ken-secret"):
        assert secret not in everything


def zeros_archive(gib: int) -> bytes:
    """A tar.gz holding one file of `gib` GiB of zeros, a few MB in all: gzip members may follow one another, and
    after its header the whole tar stream is zeros."""
    header = tarfile.TarInfo("zeros.bin")
    header.size = gib * 1024**3
    block = gzip.compress(b"\0" * 1024**2, compresslevel=9)
    return gzip.compress(header.tobuf(format=tarfile.GNU_FORMAT)) + block * (gib * 1024) + gzip.compress(b"\0" * 1024)


def upload_zeros(plane, gib: int) -> str:
    response = plane.api("POST", "/api/uploads", data=zeros_archive(gib), headers={"Content-Type": "application/gzip"},
                         timeout=120)
    assert response.status_code == 201, response.text
    assert response.json()["unpacked_size"] == gib * 1024**3
    return response.json()["id"]


def open_files(pid: int) -> list[str]:
    found = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            found.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            pass
    return found


def test_an_archive_bigger_than_disk_size_fails_the_job_before_writing(control_plane):
    upload = upload_zeros(control_plane, 3)
    payload = {"name": "bomb", "resources": {"disk_size": 1}, "endpoint": ECHO_ROUTES,
               "model": {"source_type": "local", "upload_id": upload}}
    job = control_plane.api("POST", "/api/jobs", json=payload).json()
    record = wait_until(lambda: (r := control_plane.api("GET", f"/api/jobs/{job['id']}").json())["status"] == "failed"
                        and r, timeout=30, message="the job to fail")
    assert record["reason"].startswith("the model folder unpacks to more than disk_size (1.0 GB)"), record["reason"]
    assert len(record["reason"]) < 300
    workdir = control_plane.home / "jobs" / job["id"]
    assert sorted(p.name for p in workdir.iterdir()) == ["routes.json"]  # no partial files left


def test_removing_a_job_mid_unpack_stops_the_writer_and_frees_the_disk(control_plane):
    upload = upload_zeros(control_plane, 3)
    payload = {"name": "big", "endpoint": ECHO_ROUTES, "model": {"source_type": "local", "upload_id": upload}}
    job = control_plane.api("POST", "/api/jobs", json=payload).json()
    written = control_plane.home / "jobs" / job["id"] / "model.partial" / "zeros.bin"
    wait_until(lambda: written.exists() and written.stat().st_size > 20 * 1024**2, timeout=30,
               message="unpacking to begin")
    began = time.monotonic()
    response = control_plane.api("DELETE", f"/api/jobs/{job['id']}", params={"force": "true"})
    assert response.status_code in (200, 204), response.text
    assert time.monotonic() - began < 10
    assert not (control_plane.home / "jobs" / job["id"]).exists()
    assert not any("zeros.bin" in path for path in open_files(control_plane.process.pid))  # nobody writes there
    time.sleep(0.5)
    assert not (control_plane.home / "jobs" / job["id"]).exists()


def test_member_names_too_long_for_a_filesystem_are_refused_at_upload(shared_plane):
    for name, message in (("a" * 3000 + ".py", "a file or folder name is longer than 255 bytes"),
                          ("/".join(["d" * 200] * 25) + "/x.py", "the path is longer than 4096 bytes")):
        response = shared_plane.api("POST", "/api/uploads", data=archive(member(name)),
                                    headers={"Content-Type": "application/gzip"})
        assert response.status_code == 422, response.text
        text = response.json()["message"]
        assert message in text and len(text) < 300, text


def test_stopping_or_removing_a_job_mid_clone_ends_git_at_once(control_plane):
    with socket.socket() as silent:  # accepts the connection (the backlog does) and never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        uri = f"git://127.0.0.1:{silent.getsockname()[1]}/models.git"
        for action in ("stop", "remove"):
            payload = {"name": f"clone-{action}", "endpoint": ECHO_ROUTES,
                       "model": {"source_type": "git", "source_uri": uri}}
            job = control_plane.api("POST", "/api/jobs", json=payload).json()
            workdir = control_plane.home / "jobs" / job["id"]
            wait_until(lambda workdir=workdir: [p for p in processes_mentioning(str(workdir)) if _is_git(p)],
                       timeout=20, message="git to start")
            began = time.monotonic()
            if action == "stop":
                assert control_plane.api("POST", f"/api/jobs/{job['id']}/stop").status_code == 200
                wait_until(lambda job_id=job["id"]: control_plane.api("GET", f"/api/jobs/{job_id}").json()["status"]
                           == "stopped", timeout=10, message="the job to stop")
                assert not (workdir / "model.partial").exists() and not (workdir / "model").exists()
            else:
                removed = control_plane.api("DELETE", f"/api/jobs/{job['id']}", params={"force": "true"})
                assert removed.status_code in (200, 204)
                assert not workdir.exists()
            assert time.monotonic() - began < 10
            assert [p for p in processes_mentioning(str(workdir)) if _is_git(p)] == []


def _is_git(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")[0].endswith(b"git")
    except OSError:
        return False
