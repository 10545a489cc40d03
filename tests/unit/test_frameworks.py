"""trainML's environment names (frameworks.py): the Python each picks, the packages it adds to a job's
environment, the job's own pins winning, and the same table in the API, the CLI and the manual."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from trainml_cli.cli.environment import environment_payload
from trainml_cli.cli.jobview import describe_environment
from trainml_cli.environment import check_environment, check_requirement, requirement_name
from trainml_cli.errors import UsageError
from trainml_cli.frameworks import FRAMEWORKS, find, python_of
from trainml_cli.server import resources as res
from trainml_cli.server.archives import Uploads
from trainml_cli.server.backends.local import LocalBackend
from trainml_cli.server.environments import Environments
from trainml_cli.server.interpreters import Interpreters
from trainml_cli.server.models import Models
from trainml_cli.server.payload import check_job
from trainml_cli.server.store import Store

ROOT = Path(__file__).resolve().parents[2]
ROUTE = {"verb": "POST", "path": "/predict", "file": "predict", "function": "predict"}


@pytest.fixture(scope="module")
def interpreters():
    return Interpreters(None)  # probing the machine's Pythons takes seconds: once for the module


@pytest.fixture
def check(tmp_path, interpreters):
    store = Store(tmp_path / "db")
    uploads = Uploads(tmp_path / "uploads")
    backend = LocalBackend(pool=res.GpuPool([]))
    yield lambda environment: check_job({"name": "j", "endpoint": {"routes": [ROUTE]}, "environment": environment,
                                         "model": {"source_type": "git", "source_uri": "https://example.invalid/r"}},
                                        backend, uploads, Models(store, tmp_path / "models", uploads), interpreters)
    store.close()


@pytest.mark.parametrize("name, python, packages", [
    ("PYTORCH_PY39_113", "3.9", ["torch==1.13.*"]),
    ("pytorch_py39_20", "3.9", ["torch==2.0.*"]),
    ("Tensorflow_Py39_212", "3.9", ["tensorflow==2.12.*"]),
    ("MXNET_PY39_19", "3.9", ["mxnet==1.9.*", "numpy<1.24"]),
    ("deeplearning_py310", "3.10", ["torch==2.3.*", "tensorflow==2.15.*", "numpy<2", "scipy", "pandas",
                                    "scikit-learn", "pillow"]),
], ids=["pytorch", "lower-case", "mixed-case", "mxnet", "deep-learning"])
def test_a_name_in_any_case_picks_its_python_and_adds_its_framework(check, name, python, packages):
    spec = check({"type": name})
    environment = spec["environment"]
    assert environment["type"] == name.upper()
    assert environment["framework_packages"] == packages
    assert python_of(name) == python
    assert environment["note"].endswith("; adds " + ", ".join(packages))
    assert environment["packages"]["pip"] == []  # the job's own list stays its own


def test_the_jobs_own_pins_win_over_the_names_whatever_their_spelling(check):
    environment = check({"type": "MXNET_PY39_19", "packages": {"pip": ["NumPy==1.23.5", "tabulate"]}})["environment"]
    assert environment["framework_packages"] == ["mxnet==1.9.*"]
    assert environment["packages"]["pip"] == ["NumPy==1.23.5", "tabulate"]
    assert environment["note"].endswith("; adds mxnet==1.9.* (the job's own pins replace numpy<1.24)")
    environment = check({"type": "PYTORCH_PY39_113", "packages": {"pip": ["torch[opt]>=2.1,<3"]}})["environment"]
    assert environment["framework_packages"] == []
    assert environment["note"].endswith("; adds nothing (the job's own pins replace torch==1.13.*)")


def test_a_name_trainml_does_not_list_picks_its_python_and_adds_nothing(check):
    environment = check({"type": "DEEPLEARNING_PY299"})["environment"]
    assert environment["framework_packages"] == []
    assert environment["note"].endswith("; not one of trainML's environment names, so it adds no packages")
    assert "asks for Python 2.99, which this machine lacks" in environment["note"]


@pytest.mark.parametrize("name", ["PYTORCH PY39", "torch==1.13", "_PY39", "PY39-113"])
def test_what_is_not_an_environment_name_is_refused(name):
    with pytest.raises(UsageError, match="is not an environment name such as DEEPLEARNING_PY310"):
        check_environment({"type": name})


def test_an_environment_without_a_name_adds_nothing(check):
    environment = check({"packages": {"pip": ["tabulate"]}})["environment"]
    assert "framework_packages" not in environment and environment["note"] is None


@pytest.mark.parametrize("text, name", [
    ("Scikit_Learn>=1.2", "scikit-learn"), ("torch[opt] ==1.13.*", "torch"), ("zope.interface", "zope-interface"),
    ("numpy ; python_version<'3.12'", "numpy"), ("./mylib", None), ("https://example.invalid/x.whl", None),
])
def test_a_requirement_names_its_project_as_pypi_compares_names(text, name):
    assert requirement_name(text) == name


def test_every_entry_is_a_valid_requirement_list_on_the_python_its_name_says():
    for key, framework in FRAMEWORKS.items():
        assert key == framework.id == key.upper() and find(key.lower()) is framework
        assert re.search(r"_PY(\d)(\d+)", key).groups() == tuple(framework.python.split("."))
        assert [check_requirement(p, ("x",)) for p in framework.packages] == list(framework.packages)
        assert re.fullmatch(r"\d+(\.\d)? (MB|GB)", framework.download)
    # trainML's CLI 1.x offers exactly these names for --environment.
    assert set(FRAMEWORKS) == {"DEEPLEARNING_PY39", "DEEPLEARNING_PY310", "PYTORCH_PY39_20", "PYTORCH_PY39_113",
                               "PYTORCH_PY39_112", "TENSORFLOW_PY39_212", "TENSORFLOW_PY39_211",
                               "TENSORFLOW_PY39_210", "MXNET_PY39_19"}


def test_the_manuals_table_is_the_same_table():
    page = (ROOT / "docs" / "environments.md").read_text()
    rows = {cells[0].strip("` "): [c.strip() for c in cells[1:]]
            for cells in (line.strip("|").split("|") for line in page.splitlines() if line.startswith("| `"))}
    for framework in FRAMEWORKS.values():
        assert rows.get(framework.id) == [framework.python, ", ".join(f"`{p}`" for p in framework.packages),
                                          framework.download], framework.id


def test_a_requirements_file_pinning_the_framework_wins_in_the_build_plan(tmp_path, interpreters):
    environments = Environments(tmp_path / "envs", interpreters, tmp_path / "cache")
    environment = {"packages": {"pip": []}, "type": "MXNET_PY39_19", "framework_packages": ["mxnet==1.9.*",
                                                                                            "numpy<1.24"]}
    model = tmp_path / "model"
    model.mkdir()
    assert environments.plan(environment, model).pip == ("mxnet==1.9.*", "numpy<1.24")
    (model / "requirements.txt").write_text("# pinned by the model\nnumpy==1.23.5  # MXNet's last\n-r more.txt\n")
    (model / "more.txt").write_text("")
    plan = environments.plan(environment, model)
    assert plan.pip == ("mxnet==1.9.*",) and plan.requirements_file == "requirements.txt"
    # A record from before the names added packages keeps its environment: nothing is added on a restart.
    assert environments.plan({"packages": {"pip": []}, "type": "MXNET_PY39_19"}, tmp_path / "none") is None


def test_job_get_shows_what_the_name_added():
    text = describe_environment({"interpreter": {"version": "3.9.18"}, "packages": {"pip": ["tabulate"]},
                                 "type": "MXNET_PY39_19", "framework_packages": ["mxnet==1.9.*", "numpy<1.24"]})
    assert text == "3.9.18, pip: tabulate, MXNET_PY39_19: mxnet==1.9.* numpy<1.24"


@pytest.mark.anyio
async def test_the_api_lists_the_names_with_what_each_adds(plane):
    answer = await plane.api("GET", "/api/environments")
    assert answer.status_code == 200
    assert answer.json()["trainml"] == [f.to_dict() for f in FRAMEWORKS.values()]
    names = {f["id"]: f for f in answer.json()["trainml"]}
    assert names["PYTORCH_PY39_113"]["name"] == "PyTorch 1.13 - Python 3.9"  # trainML's display name


def test_the_cli_accepts_a_name_in_any_case_and_refuses_a_malformed_one(cli, tmp_path):
    (tmp_path / "predict.py").write_text("def predict():\n    return 1\n")
    argv = ["job", "create", "endpoint", "x", "--model-dir", str(tmp_path), "--route", json.dumps(ROUTE)]
    code, _, err = cli(*argv, "--environment", "torch 1.13")
    assert code == 2 and "'torch 1.13' is not an environment name such as DEEPLEARNING_PY310" in err
    # A well-formed name in any case passes the CLI's checks, to be matched by the control plane.
    assert environment_payload((), (), None, None, "pytorch_py39_113", str(tmp_path)) == {"type": "pytorch_py39_113"}


def test_on_ray_the_command_lines_pin_replaces_the_requirements_files_line(tmp_path):
    # Ray installs the lines itself (rayapps.uv_packages): the file's tabulate==0.9.0 gives way to --pip-packages',
    # as the local backend's build does (tests/test_environments.py), and a runtime package is never replaced.
    from trainml_cli.launchspec import LaunchSpec
    from trainml_cli.server.backends.base import Launch
    from trainml_cli.server.backends.rayapps import uv_packages

    (tmp_path / "requirements.txt").write_text("tabulate==0.9.0  # pinned\npydantic>=2.5\nsix\n")
    launch = Launch(job_id="j", runtime=LaunchSpec(model_dir=str(tmp_path), route_file=str(tmp_path / "r.json")),
                    env={}, pip=["tabulate==0.8.10", "pydantic>=2.6"])
    assert uv_packages(launch)["packages"] == ["tabulate==0.8.10", "pydantic>=2.6", "pydantic>=2.5", "six"]
