"""A model's own packages, installed from its folder by requirements.txt (`./mylib`), against a real control plane
and real uv builds: an edited package gets a new environment, an unchanged one reuses it, and a path that leads
out of the model folder is refused naming the file and line.

The model is a copy of tests/models/local_package (its library is built with flit_core from the local index), so
a test can edit it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import MODELS, ControlPlane, kill_everything_under, run
from test_environments import cli, messages
from trainml_cli.errors import JobFailed, UsageError
from trainml_cli.localpaths import local_digest
from trainml_cli.packing import pack

ANSWER_ROUTE = {"verb": "GET", "path": "/answer", "file": "predict", "function": "answer"}
LIBRARY = Path("mylib", "trainml_fixture_mylib", "__init__.py")


@pytest.fixture(scope="module")
def plane(tmp_path_factory):
    plane = ControlPlane(tmp_path_factory.mktemp("local-paths") / "home").start()
    yield plane
    plane.stop()
    kill_everything_under(plane.home)


def model_copy(tmp_path: Path, name: str = "model") -> Path:
    return Path(shutil.copytree(MODELS / "local_package", tmp_path / name,
                                ignore=shutil.ignore_patterns("__pycache__")))


def local(folder: Path) -> dict:
    return {"source_type": "local", "source_uri": str(folder)}


def test_an_edited_local_package_gets_a_new_environment_and_an_unchanged_one_reuses_its(plane, tmp_path):
    model = model_copy(tmp_path)

    async def scenario():
        async with plane.client() as client:
            first = await client.jobs.create("mylib-first", model=local(model), endpoint={"routes": [ANSWER_ROUTE]})
            await first.wait_for("running", timeout=300)
            assert await first.call("GET /answer") == {"answer": "first"}

            (model / LIBRARY).write_text("ANSWER = 'edited'\n")
            edited = await client.jobs.create("mylib-edited", model=local(model), endpoint={"routes": [ANSWER_ROUTE]})
            await edited.wait_for("running", timeout=300)
            assert await edited.call("GET /answer") == {"answer": "edited"}, "the endpoint ran the library's old code"
            assert edited.dict["environment"]["key"] != first.dict["environment"]["key"]
            assert any("building Python" in m and "-r requirements.txt" in m for m in await messages(edited))

            # The same folder again, with the leftovers of running and building it: the same environment.
            (model / "mylib" / "trainml_fixture_mylib" / "__pycache__").mkdir()
            (model / "mylib" / "trainml_fixture_mylib" / "__pycache__" / "__init__.cpython-311.pyc").write_bytes(b"x")
            again = await client.jobs.create("mylib-again", model=local(model), endpoint={"routes": [ANSWER_ROUTE]})
            await again.wait_for("running", timeout=300)
            assert again.dict["environment"]["key"] == edited.dict["environment"]["key"]
            assert any("(built before)" in m for m in await messages(again))
            assert await again.call("GET /answer") == {"answer": "edited"}

            assert await first.call("GET /answer") == {"answer": "first"}, "the first endpoint's environment changed"
            listing = await client.environments.listing()
            keys = {job.dict["environment"]["key"] for job in (first, edited, again)}
            assert keys <= {e["key"] for e in listing["environments"]} and len(keys) == 2
            for job in (first, edited, again):
                await job.remove(force=True)

    run(scenario())


def test_a_nested_requirements_file_and_a_pip_package_from_the_folder_count_by_their_contents(plane, tmp_path):
    model = model_copy(tmp_path)
    (model / "requirements.txt").write_text("-r reqs/serve.txt\n")
    (model / "reqs").mkdir()
    (model / "reqs" / "serve.txt").write_text("# paths on a line are relative to the model folder, as uv reads them\n"
                                              "./mylib\n")
    _an_edit_of_the_library_is_served(plane, model, "nested", "from the nested file")


def _an_edit_of_the_library_is_served(plane, model, name, answer, *options):
    """Create NAME from the folder, edit the library, create NAME-edited: a new environment answers the edit."""
    argv = ["--model-dir", str(model), "--route", json.dumps(ANSWER_ROUTE), "--timeout", "300", "--format", "json",
            *options]
    code, out, err = cli(plane, "job", "create", "endpoint", name, *argv)
    assert code == 0, err
    first = json.loads(out)["environment"]["key"]
    (model / LIBRARY).write_text(f"ANSWER = {answer!r}\n")
    code, out, err = cli(plane, "job", "create", "endpoint", f"{name}-edited", *argv)
    assert code == 0, err
    assert json.loads(out)["environment"]["key"] != first
    code, out, _ = cli(plane, "job", "call", f"{name}-edited", "/answer")
    assert code == 0 and json.loads(out) == {"answer": answer}
    for job in (name, f"{name}-edited"):
        cli(plane, "job", "remove", job, "--force")


@pytest.mark.parametrize("lines, message", [
    (["tabulate==0.9.0", "# a comment is a line too", "./../x"],
     "requirements.txt line 3: ./../x leaves the model folder"),
    (["-e ../../etc"], "requirements.txt line 1: ../../etc leaves the model folder"),
    (["mylib @ file:///etc/passwd"], "requirements.txt line 1: /etc/passwd is absolute and leaves the model folder"),
    (["-r ../other.txt"], "requirements.txt line 1: ../other.txt leaves the model folder"),
    (["./outside"], "requirements.txt line 1: ./outside leaves the model folder through a symbolic link (outside)"),
])
def test_a_requirement_leading_out_of_the_model_folder_is_exit_2_and_nothing_is_created(plane, tmp_path, lines,
                                                                                         message):
    model = model_copy(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", model / "outside")
    (model / "requirements.txt").write_text("\n".join(lines) + "\n")
    uploads = sorted((plane.home / "uploads").iterdir()) if (plane.home / "uploads").exists() else []
    code, _, err = cli(plane, "job", "create", "endpoint", "escapes", "--model-dir", str(model),
                       "--route", json.dumps(ANSWER_ROUTE))
    assert code == 2 and message in err, err
    assert "Traceback" not in err
    code, out, _ = cli(plane, "job", "list", "--format", "json")
    assert "escapes" not in [job["name"] for job in json.loads(out)]
    assert sorted((plane.home / "uploads").iterdir()) == uploads, "the folder was uploaded all the same"


def test_a_git_model_whose_link_leads_out_fails_naming_the_line_and_as_a_stored_model_is_422(plane, tmp_path):
    """A repository can hold symbolic links, which an upload cannot: the control plane checks its own copy."""
    repo = model_copy(tmp_path, "repo")
    shutil.rmtree(repo / "mylib")
    os.symlink("/etc", repo / "mylib")
    for command in (["init", "-q", "-b", "main"], ["add", "-A"],
                    ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "model"]):
        subprocess.run(["git", *command], cwd=repo, check=True)
    envs_before = sorted((plane.home / "envs").iterdir())

    async def scenario():
        async with plane.client() as client:
            job = await client.jobs.create("git-escapes", model={"source_type": "git", "source_uri": repo.as_uri()},
                                           endpoint={"routes": [ANSWER_ROUTE]})
            with pytest.raises(JobFailed) as failed:
                await job.wait_for("running", timeout=120)
            assert "requirements.txt line 2: ./mylib leaves the model folder through a symbolic link (mylib)" in \
                str(failed.value)
            await job.remove(force=True)

            stored = await client.models.create("escapes", source_type="git", source_uri=repo.as_uri())
            answer = plane.api("POST", "/api/jobs", json={
                "name": "stored-escapes", "endpoint": {"routes": [ANSWER_ROUTE]},
                "model": {"source_type": "trainml", "source_uri": stored.id}})
            assert answer.status_code == 422, answer.text
            assert "requirements.txt line 2: ./mylib leaves the model folder through a symbolic link (mylib)" in \
                answer.json()["message"]
            assert "stored-escapes" not in [job["name"] for job in plane.api("GET", "/api/jobs").json()]

    run(scenario())
    assert sorted((plane.home / "envs").iterdir()) == envs_before


def test_the_api_refuses_a_requirement_leading_out_with_422_before_creating_the_job(plane, tmp_path):
    model = model_copy(tmp_path)
    (model / "reqs").mkdir()
    (model / "reqs" / "serve.txt").write_text("tabulate==0.9.0\n./mylib\n-r ../../../etc/pip.conf\n")
    upload = plane.api("POST", "/api/uploads", data=pack(model).read(), headers={"Content-Type": "application/gzip"})
    assert upload.status_code == 201, upload.text
    base = {"name": "api-escapes", "endpoint": {"routes": [ANSWER_ROUTE]}}
    uploaded = {"source_type": "local", "source_uri": str(model), "upload_id": upload.json()["id"]}
    git = {"source_type": "git", "source_uri": "https://example.invalid/model.git"}
    for model_source, environment, message in (
            (uploaded, {"requirements": "reqs/serve.txt"},
             "reqs/serve.txt line 3: ../../../etc/pip.conf leaves the model folder"),
            (git, {"packages": {"pip": ["mylib @ file:///etc/passwd"]}},
             "environment.packages.pip[0]: /etc/passwd is absolute and leaves the model folder")):
        answer = plane.api("POST", "/api/jobs", json={**base, "model": model_source, "environment": environment})
        assert answer.status_code == 422 and message in answer.json()["message"], answer.text
    assert "api-escapes" not in [job["name"] for job in plane.api("GET", "/api/jobs").json()]


def test_an_editable_local_package_outlives_the_job_that_built_its_environment(plane, tmp_path):
    """`-e ./mylib` in an environment shared by two jobs: removing the first (and its folder) must not break the
    second when it starts again."""
    model = model_copy(tmp_path)
    (model / "requirements.txt").write_text("-e ./mylib\n")
    (model / LIBRARY).write_text("ANSWER = 'editable'\n")

    async def scenario():
        async with plane.client() as client:
            builder = await client.jobs.create("editable-1", model=local(model), endpoint={"routes": [ANSWER_ROUTE]})
            await builder.wait_for("running", timeout=300)
            sharer = await client.jobs.create("editable-2", model=local(model), endpoint={"routes": [ANSWER_ROUTE]})
            await sharer.wait_for("running", timeout=300)
            assert sharer.dict["environment"]["key"] == builder.dict["environment"]["key"]
            await builder.remove(force=True)
            await sharer.stop()
            await sharer.start()
            await sharer.wait_for("running", timeout=300)
            assert await sharer.call("GET /answer") == {"answer": "editable"}
            await sharer.remove(force=True)

    run(scenario())


def test_hashing_stops_past_its_cap_naming_the_line(tmp_path):
    """What the control plane reads for a key is bounded (MAX_FILES, MAX_BYTES; smaller here, not to write 1 GiB)."""
    model = model_copy(tmp_path)
    for i in range(5):
        (model / "mylib" / f"data{i}.bin").write_bytes(b"x" * 1000)
    with pytest.raises(UsageError, match=r"requirements.txt line 2: the local paths .* hold more than 4 files, "):
        local_digest(model, "requirements.txt", [], max_files=4)
    with pytest.raises(UsageError, match=r"requirements.txt line 2: .* more than 4,096 bytes, "):
        local_digest(model, "requirements.txt", [], max_bytes=4096)
    assert local_digest(model, "requirements.txt", []) == local_digest(model, "requirements.txt", [])


def test_a_pip_package_from_the_folder_is_keyed_by_its_contents_too(plane, tmp_path):
    model = model_copy(tmp_path)
    (model / "requirements.txt").unlink()
    _an_edit_of_the_library_is_served(plane, model, "pip-path", "from --pip-packages",
                                      "--pip-packages", "trainml-fixture-mylib @ file:./mylib")


def test_a_local_wheel_and_an_included_file_count_by_their_bytes(tmp_path):
    model = model_copy(tmp_path)
    (model / "wheels").mkdir()
    wheel = model / "wheels" / "trainml_fixture_other-1.0-py3-none-any.whl"
    wheel.write_bytes(b"first build")
    (model / "requirements.txt").write_text("\ufeff-r constraints/all.txt\n"
                                            + wheel.relative_to(model).as_posix() + "\n")
    (model / "constraints").mkdir()
    (model / "constraints" / "all.txt").write_text("tabulate==0.9.0\n")
    keys = [local_digest(model, "requirements.txt", [])]
    wheel.write_bytes(b"second build")
    keys.append(local_digest(model, "requirements.txt", []))
    (model / "constraints" / "all.txt").write_text("tabulate==0.8.10\n")
    keys.append(local_digest(model, "requirements.txt", []))
    assert len(set(keys)) == 3
