"""Endpoint environments against a real control plane, real uv installs and real endpoint processes.

The packages are small and pure Python (tabulate; a wheel the test builds). uv's download cache is shared by
the whole session (conftest sets UV_CACHE_DIR), so only the first build downloads anything.
"""

from __future__ import annotations

import asyncio
import base64
import configparser
import hashlib
import importlib.util
import json
import re
import zipfile
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from conftest import MODELS, ControlPlane, kill_everything_under, processes_mentioning, run, wait_until
from trainml_cli.cli.main import main
from trainml_cli.environment import split_pip_packages
from trainml_cli.errors import Conflict, JobFailed, UsageError
from trainml_cli.runtimerequirements import RUNTIME_REQUIREMENTS

VERSION_ROUTE = {"verb": "GET", "path": "/version", "file": "predict", "function": "version"}
ECHO_ROUTE = {"verb": "POST", "path": "/predict", "file": "predict", "function": "predict",
              "body": [{"name": "text", "type": "str"}]}


def local(name: str) -> dict:
    return {"source_type": "local", "source_uri": str(MODELS / name)}


def pip(*packages: str) -> dict:
    return {"packages": {"pip": list(packages)}}


@pytest.fixture(scope="module")
def plane(tmp_path_factory):
    plane = ControlPlane(tmp_path_factory.mktemp("envs") / "home").start()
    yield plane
    plane.stop()
    kill_everything_under(plane.home)


def cli(plane, *argv):
    """main(argv) in this process against the plane: (exit code, stdout, stderr)."""
    env = {"TRAINML_HOME": str(plane.home), "TRAINML_API_URL": plane.url, "NO_COLOR": "1"}
    with CliRunner().isolation(env=env) as (out, err, _):
        code = main(list(argv))
    return code, out.getvalue().decode(), err.getvalue().decode()


async def messages(job) -> list[str]:
    return [entry["message"] async for entry in job.logs()]


def test_pip_packages_give_two_endpoints_two_versions_of_a_package_the_platform_lacks(plane):
    platform_had = importlib.util.find_spec("tabulate") is not None

    async def scenario():
        async with plane.client() as client:
            old, new = await asyncio.gather(
                client.jobs.create("tab-old", model=local("tabulate_version"), endpoint={"routes": [VERSION_ROUTE]},
                                   environment=pip("tabulate==0.8.10")),
                client.jobs.create("tab-new", model=local("tabulate_version"), endpoint={"routes": [VERSION_ROUTE]},
                                   environment=pip("tabulate==0.9.0")))
            await asyncio.gather(old.wait_for("running", timeout=300), new.wait_for("running", timeout=300))
            assert requests.get(old.url + "/version", timeout=10).json() == {"tabulate": "0.8.10"}
            assert requests.get(new.url + "/version", timeout=10).json() == {"tabulate": "0.9.0"}
            assert old.dict["environment"]["key"] != new.dict["environment"]["key"]
            log = await messages(old)
            assert any("building Python" in m and "tabulate==0.8.10" in m for m in log)
            assert any(m.strip() == "+ tabulate==0.8.10" for m in log), "the installer's progress is in the job log"
            assert log.index("status: starting") < next(i for i, m in enumerate(log) if "built in" in m)
            for job in (old, new):
                await job.stop()
                await job.remove()

    run(scenario())
    assert (importlib.util.find_spec("tabulate") is not None) == platform_had, "the platform's Python was changed"


def test_a_requirements_txt_at_the_model_root_is_used_and_the_log_says_so(plane):
    code, out, err = cli(plane, "job", "create", "endpoint", "req-file", "--model-dir",
                         str(MODELS / "requirements_file"),
                         "--route", json.dumps(VERSION_ROUTE), "--timeout", "300")
    assert code == 0, err
    url = out.splitlines()[-1].split()[-1]  # `Endpoint is running at:  URL`, the last line
    assert requests.get(url + "/version", timeout=10).json() == {"tabulate": "0.9.0"}
    code, out, _ = cli(plane, "job", "logs", "req-file")
    assert "using requirements.txt from the model folder" in out
    code, out, _ = cli(plane, "job", "get", "req-file")
    assert code == 0 and "-r requirements.txt" in out and "(environment " in out
    key = out.split("(environment ")[1].split(")")[0]
    # The list shows what the file holds, whole; removing it while the job runs names the job.
    code, out, _ = cli(plane, "environment", "list")
    (row,) = [line for line in out.splitlines() if line.startswith(key[:12])]
    assert code == 0 and "tabulate==0.9.0" in row and "#" not in row, out
    code, out, err = cli(plane, "environment", "remove", key)
    assert code == 1 and "used by job(s) req-file;" in err, err
    cli(plane, "job", "remove", "req-file", "--force")


def test_pip_packages_on_the_command_line_win_over_the_requirements_files_pin(plane):
    # requirements.txt pins tabulate==0.9.0; on trainML a later `pip install` of --pip-packages replaces it.
    code, out, err = cli(plane, "job", "create", "endpoint", "req-override", "--model-dir",
                         str(MODELS / "requirements_file"), "--pip-packages", "tabulate==0.8.10",
                         "--route", json.dumps(VERSION_ROUTE), "--timeout", "300")
    assert code == 0, out + err
    url = out.splitlines()[-1].split()[-1]
    assert requests.get(url + "/version", timeout=10).json() == {"tabulate": "0.8.10"}
    code, out, _ = cli(plane, "job", "logs", "req-override")
    assert "--pip-packages replace requirements.txt's requirement for: tabulate==0.8.10" in out
    cli(plane, "job", "remove", "req-override", "--force")


def test_the_same_packages_build_once_for_three_concurrent_jobs(plane):
    async def scenario():
        async with plane.client() as client:
            # A package spec no other test uses, so this key is new here.
            jobs = await asyncio.gather(*(
                client.jobs.create(f"same-{i}", model=local("tabulate_version"), endpoint={"routes": [VERSION_ROUTE]},
                                   environment=pip("tabulate>=0.8.9,<0.8.11")) for i in range(3)))
            await asyncio.gather(*(job.wait_for("running", timeout=300) for job in jobs))
            keys = {job.dict["environment"]["key"] for job in jobs}
            assert len(keys) == 1
            logs = [await messages(job) for job in jobs]
            builds = sum(any("building Python" in m for m in log) for log in logs)
            waits = sum(any("waiting for the build started for" in m or "(built before)" in m for m in log)
                        for log in logs)
            assert (builds, waits) == (1, 2)
            listing = await client.environments.listing()
            (record,) = [e for e in listing["environments"] if e["key"] in keys]
            assert sorted(record["in_use"]) == sorted(job.id for job in jobs)
            assert record["pip"] == ["tabulate>=0.8.9,<0.8.11"] and record["size"] > 0
            for job in jobs:
                assert requests.get(job.url + "/version", timeout=10).json() == {"tabulate": "0.8.10"}

            with pytest.raises(Conflict, match="used by job"):
                await client.environments.remove(keys.pop()[:8])  # a unique prefix names it too
            for job in jobs:
                await job.stop()
            removed = await client.environments.prune()
            assert record["key"] in removed
            assert not (plane.home / "envs" / record["key"]).exists()
            # A stopped job's environment was pruned: starting it builds it again.
            await jobs[0].start()
            await jobs[0].wait_for("running", timeout=300)
            assert requests.get(jobs[0].url + "/version", timeout=10).json() == {"tabulate": "0.8.10"}
            for job in jobs:
                await job.remove(force=True)

    run(scenario())


def test_a_package_that_does_not_exist_fails_the_job_fast_naming_it(plane):
    async def scenario():
        async with plane.client() as client:
            job = await client.jobs.create("no-such", model=local("tabulate_version"),
                                           endpoint={"routes": [VERSION_ROUTE]},
                                           environment=pip("trainml-no-such-package-4d1c"))
            with pytest.raises(JobFailed) as failed:
                await job.wait_for("running", timeout=120)
            assert "trainml-no-such-package-4d1c" in str(failed.value)
            assert "installing the environment's packages failed" in job.reason
            # The status line in the log keeps the cause, not only the words before its colon.
            (status,) = [m for m in await messages(job) if m.startswith("status: failed")]
            assert "trainml-no-such-package-4d1c" in status, status
            key_dirs = [p.name for p in (plane.home / "envs").iterdir()
                        if not (p / "trainml-environment.json").exists()]
            assert key_dirs == [], "a failed build leaves nothing a later job would reuse"
            await job.remove()

    run(scenario())


def test_a_conflict_with_the_runtimes_requirements_names_both(plane):
    async def scenario():
        async with plane.client() as client:
            job = await client.jobs.create("old-pydantic", model=local("tabulate_version"),
                                           endpoint={"routes": [VERSION_ROUTE]}, environment=pip("pydantic<2"))
            with pytest.raises(JobFailed):
                await job.wait_for("running", timeout=120)
            assert "conflict with what the endpoint runtime needs (pydantic>=2.4)" in job.reason
            assert "pydantic<2" in job.reason
            await job.remove()

    run(scenario())


def test_removing_the_only_job_waiting_for_a_build_cancels_it(plane):
    async def scenario():
        async with plane.client() as client:
            job = await client.jobs.create("slow", model=local("slow_build"), endpoint={"routes": [ECHO_ROUTE]})

            async def building():
                return any("building Python" in m for m in await messages(job))

            for _ in range(600):
                if await building():
                    break
                await asyncio.sleep(0.1)
            (key,) = [e["key"] for e in (await client.environments.listing())["environments"] if e["building"]]
            # The installer is running the package's (sleeping) build backend.
            wait_until(lambda: processes_mentioning("slow_backend"), 60, message="the build backend to run")
            assert (await job.refresh()).status == "starting"
            await job.remove(force=True)
            wait_until(lambda: not processes_mentioning("slow_backend"), 20, message="the build to be killed")
            wait_until(lambda: not (plane.home / "envs" / key).exists(), 20, message="the partial environment to go")
            listing = await client.environments.listing()
            assert key not in [e["key"] for e in listing["environments"]]

    run(scenario())


def make_wheel(folder: Path, name: str, version: str, module: str, code: str) -> Path:
    """A real (pure Python) wheel, built here: nothing on any index has it."""
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{module}.py": code,
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: trainml-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    files[f"{dist}/RECORD"] = "\n".join(record + [f"{dist}/RECORD,,"]) + "\n"
    wheel = folder / f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


def test_pip_find_links_from_pips_configuration_serve_a_local_wheel(tmp_path, monkeypatch):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    make_wheel(wheels, "trainml-fixture-pkg", "1.0", "trainml_fixture_pkg", "HELLO = 'from a local wheel'\n")
    config = configparser.ConfigParser()
    config["global"] = {"find-links": str(wheels)}
    with open(tmp_path / "pip.conf", "w") as f:
        config.write(f)
    monkeypatch.setenv("PIP_CONFIG_FILE", str(tmp_path / "pip.conf"))
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)  # else it would replace the file's find-links, as in pip
    plane = ControlPlane(tmp_path / "home").start()
    try:
        async def scenario():
            async with plane.client() as client:
                job = await client.jobs.create(
                    "wheel", model=local("local_wheel"), environment=pip("trainml-fixture-pkg==1.0"),
                    endpoint={"routes": [{"verb": "GET", "path": "/hello", "file": "predict", "function": "hello"}]})
                await job.wait_for("running", timeout=300)
                assert await job.call("GET /hello") == {"hello": "from a local wheel"}

        run(scenario())
    finally:
        plane.stop()
        kill_everything_under(plane.home)


def test_another_interpreter_by_path_and_an_unknown_version_is_exit_2(plane):
    listing = requests.get(plane.url + "/api/environments", headers={"Authorization": f"Bearer {plane.token}"},
                           timeout=30).json()
    default = next(i for i in listing["interpreters"] if i["default"])
    code, _, err = cli(plane, "job", "create", "endpoint", "py-399", "--model-dir", str(MODELS / "tabulate_version"),
                       "--python", "3.99", "--route", json.dumps(VERSION_ROUTE))
    assert code == 2
    assert "no Python 3.99" in err and default["version"] + " (default)" in err
    others = [i for i in listing["interpreters"] if not i["default"] and i["version"] != default["version"]]
    if not others:
        pytest.skip("this machine has one Python only")
    other = others[-1]

    async def scenario():
        async with plane.client() as client:
            job = await client.jobs.create("other-python", model=local("python_version"), python=other["path"],
                                           endpoint={"routes": [{"verb": "GET", "path": "/version", "file": "predict",
                                                                 "function": "python_version"}]})
            await job.wait_for("running", timeout=300)
            assert await job.call("GET /version") == {"version": other["version"]}
            assert job.dict["environment"]["python_version"] == other["version"]
            await job.remove(force=True)

    run(scenario())
    code, out, _ = cli(plane, "environment", "list")
    assert code == 0 and other["version"] in out


def test_a_trainml_environment_name_falls_back_to_the_default_python_and_says_so(plane):
    code, out, err = cli(plane, "job", "create", "endpoint", "dl-py", "--model-dir", str(MODELS / "python_version"),
                         "--environment", "DEEPLEARNING_PY299", "--no-connect",
                         "--route", json.dumps({"verb": "GET", "path": "/version", "file": "predict",
                                                "function": "python_version"}))
    assert code == 0, err
    assert "DEEPLEARNING_PY299 asks for Python 2.99, which this machine lacks; running on the default Python" in err
    code, out, _ = cli(plane, "job", "logs", "dl-py")
    assert "which this machine lacks; running on the default Python" in out
    cli(plane, "job", "remove", "dl-py", "--force")


def test_a_trainml_environment_name_in_any_case_brings_its_framework_into_the_endpoint(plane):
    # MXNET_PY39_19: the smallest of trainML's framework sets (about 67 MB with an empty cache).
    route = {"verb": "POST", "path": "/total", "file": "predict", "function": "total",
             "body": [{"name": "values", "type": "list"}]}
    code, out, err = cli(plane, "job", "create", "endpoint", "mx", "--model-dir", str(MODELS / "mxnet_sum"),
                         "--environment", "mxnet_py39_19", "--route", json.dumps(route), "--timeout", "600")
    assert code == 0, err
    assert "adds mxnet==1.9.*, numpy<1.24" in err
    url = out.splitlines()[-1].split()[-1]
    answer = requests.post(url + "/total", json={"values": [1, 2, 3.5]}, timeout=30).json()
    assert answer["sum"] == 6.5 and answer["mxnet"].startswith("1.9.")
    assert tuple(map(int, answer["numpy"].split(".")[:2])) < (1, 24)
    code, out, _ = cli(plane, "job", "get", "mx", "--format", "json")
    environment = json.loads(out)["environment"]
    assert environment["type"] == "MXNET_PY39_19"
    assert environment["framework_packages"] == ["mxnet==1.9.*", "numpy<1.24"]
    if any(i["version"].startswith("3.9.") for i in json.loads(cli(plane, "environment", "list", "-f", "json")[1])
           ["interpreters"]):
        assert answer["python"].startswith("3.9.")  # the Python the name asks for, when the machine has it
    code, out, _ = cli(plane, "job", "get", "mx")
    assert "MXNET_PY39_19: mxnet==1.9.* numpy<1.24" in out
    code, out, _ = cli(plane, "job", "logs", "mx")
    assert "adds mxnet==1.9.*, numpy<1.24" in out and "with mxnet==1.9.*, numpy<1.24" in out
    cli(plane, "job", "remove", "mx", "--force")
    code, out, _ = cli(plane, "environment", "names")
    assert code == 0 and re.search(r"^MXNET_PY39_19 +3\.9 +mxnet==1\.9\.\*, numpy<1\.24 +67 MB$", out, re.M), out


@pytest.mark.parametrize("argv, message", [
    (["--apt-packages", "libgomp1"], "system (apt) packages are not installed"),
    (["--conda-packages", "numpy"], "conda packages are not supported"),
    (["--custom-image", "me/model:1"], "custom images are not supported"),
    (["--pip-packages", "--index-url=http://example.invalid"], "looks like an installer option"),
    (["--requirements", "../outside.txt"], "leaves the model folder"),
    (["--requirements", "missing.txt"], "missing.txt is not a file in"),
])
def test_what_cannot_be_honoured_is_refused_with_exit_2_and_nothing_created(plane, argv, message):
    code, _, err = cli(plane, "job", "create", "endpoint", "refused", "--model-dir", str(MODELS / "tabulate_version"),
                       "--route", json.dumps(VERSION_ROUTE), *argv)
    assert code == 2 and message in err, err
    assert "Traceback" not in err
    code, out, _ = cli(plane, "job", "list", "--format", "json")
    assert "refused" not in [job["name"] for job in json.loads(out)]


def test_the_api_refuses_apt_conda_and_images_with_422(plane):
    headers = {"Authorization": f"Bearer {plane.token}"}
    base = {"name": "api-refused", "model": {"source_type": "git", "source_uri": "https://example.invalid/m.git"},
            "endpoint": {"routes": [VERSION_ROUTE]}}
    for environment, message in (({"packages": {"apt": ["libgomp1"]}}, "environment.packages.apt"),
                                 ({"packages": {"conda": ["numpy"]}}, "environment.packages.conda"),
                                 ({"custom_image": "me/model:1"}, "environment.custom_image"),
                                 ({"python": "3.99"}, "environment.python: no Python 3.99")):
        answer = requests.post(plane.url + "/api/jobs", json={**base, "environment": environment}, headers=headers,
                               timeout=30)
        assert answer.status_code == 422 and message in answer.json()["message"]
    assert requests.get(plane.url + "/api/jobs", headers=headers, timeout=30).json() == []


def test_the_sdk_refuses_before_sending():
    async def scenario():
        from trainml_cli import TrainML

        async with TrainML(api_url="http://127.0.0.1:9", token="x") as client:  # nothing listens: nothing is sent
            with pytest.raises(UsageError, match="conda packages are not supported"):
                await client.jobs.create("x", model=local("echo"), endpoint={"routes": [ECHO_ROUTE]},
                                         environment={"packages": {"conda": ["numpy"]}})

    run(scenario())


def test_trainml_comma_format_keeps_version_clauses_together():
    assert split_pip_packages(["scikit-learn,numpy>=1.20,<2", "tabulate==0.9.0"]) == [
        "scikit-learn", "numpy>=1.20,<2", "tabulate==0.9.0"]


def test_the_runtime_requirements_are_the_packages_own_for_what_it_shares():
    config = configparser.ConfigParser()
    config.read(Path(__file__).parent.parent / "setup.cfg")
    install = config["options"]["install_requires"]
    for requirement in RUNTIME_REQUIREMENTS:
        name = requirement.split(">")[0].split(";")[0]
        if name in ("uvloop", "httptools"):  # both come with uvicorn[standard]
            assert "uvicorn[standard]" in install
        else:
            assert name in install, f"{name} is in the runtime's requirements but not setup.cfg's"
