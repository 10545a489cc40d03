"""The dashboard's Create form as the server checks it (POST /api/dashboard/check): every problem of the form in
one answer, each located for the field it belongs beside, and the model code the server can read looked into
before anything is created."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from .conftest import MODELS

pytestmark = pytest.mark.anyio

ECHO_DIR = str((MODELS / "dashboard_echo").resolve())


def form(model: dict, routes: list[dict]) -> dict:
    return {"name": "checked", "resources": {"gpu_types": ["cpu"], "cpu_count": 1, "disk_size": 10, "max_price": 1},
            "model": model, "routes": routes}


def tar_gz(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


async def upload(plane, files: dict[str, bytes]) -> str:
    answer = await plane.api("POST", "/api/uploads", content=tar_gz(files),
                             headers={"content-type": "application/gzip"})
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


async def problems(plane, body: dict) -> dict[str, str]:
    answer = await plane.api("POST", "/api/dashboard/check", json=body)
    assert answer.status_code == 422, answer.text
    return {f["field"]: f["message"] for f in answer.json()["fields"]}


async def test_one_next_names_every_problem_of_every_route(plane):
    routes = [
        # a bad path does not hide a bad default in the same route
        {"verb": "POST", "path": "", "file": "echo", "function": "echo",
         "body": [{"name": "times", "type": "int", "optional": True, "default_value": "abc"}]},
        # a duplicate param does not hide a missing file
        {"verb": "POST", "path": "/b", "file": "missing", "function": "f",
         "body": [{"name": "a", "type": "int"}, {"name": "a", "type": "int"}]},
        # a function the file does not define is caught before anything is created
        {"verb": "POST", "path": "/c", "file": "echo", "function": "nothere", "body": []},
    ]
    found = await problems(plane, form({"source": "directory", "directory": ECHO_DIR}, routes))
    assert found == {
        "routes.0.path": "'' must start with '/' and use only URL path characters",
        "routes.0.body.0.default_value": "'abc' is not a Python literal",
        "routes.1.body.1.name": "'a' appears twice",
        "routes.1.file": f"'missing' not found in {ECHO_DIR} (looked for missing.py)",
        "routes.2.function": "echo.py has no function 'nothere' (it defines CALLS, echo, itertools)",
    }
    assert (await plane.api("GET", "/api/jobs")).json() == []


async def test_an_uploaded_folder_and_a_stored_model_are_looked_into(plane):
    code = b"import os\nfrom json import dumps as encode\n\ndef predict(x):\n    return x\n\nif True:\n    helper = 1\n"
    upload_id = await upload(plane, {"pkg/model.py": code})
    routes = [{"verb": "POST", "path": "/p", "file": "pkg/model", "function": "predikt", "body": []},
              {"verb": "POST", "path": "/q", "file": "pkg/other", "function": "predict", "body": []},
              {"verb": "POST", "path": "/r", "file": "pkg/model", "function": "encode", "body": []},
              {"verb": "POST", "path": "/s", "file": "pkg/model", "function": "helper", "body": []}]
    found = await problems(plane, form({"source": "upload", "upload_id": upload_id}, routes))
    assert found == {
        "routes.0.function": "pkg/model.py has no function 'predikt' (it defines encode, helper, os, predict)",
        "routes.1.file": "'pkg/other' not found in the uploaded folder (looked for pkg/other.py)",
    }

    stored = await plane.api("POST", "/api/models", json={"name": "stored", "source_type": "local",
                                                          "upload_id": upload_id})
    assert stored.status_code == 201, stored.text
    found = await problems(plane, form({"source": "trainml", "model": "stored"}, routes[:1]))
    assert found == {"routes.0.function": "pkg/model.py has no function 'predikt' "
                                          "(it defines encode, helper, os, predict)"}


async def test_a_module_that_makes_names_at_run_time_gets_the_benefit_of_the_doubt(plane):
    upload_id = await upload(plane, {"star.py": b"from math import *\n", "lazy.py": b"def __getattr__(n):\n  pass\n",
                                     "broken.py": b"def (:\n"})
    routes = [{"verb": "POST", "path": f"/{name}", "file": name, "function": "anything", "body": []}
              for name in ("star", "lazy", "broken")]
    answer = await plane.api("POST", "/api/dashboard/check", json=form({"source": "upload", "upload_id": upload_id},
                                                                       routes))
    assert answer.status_code == 200, answer.text


async def test_the_routes_of_a_routes_json_are_read_for_the_form(plane):
    route = {"verb": "POST", "path": "/p", "file": "model", "function": "predict"}
    with_file = await upload(plane, {"model.py": b"def predict():\n  pass\n",
                                     "routes.json": json.dumps([route]).encode()})
    answer = await plane.api("GET", f"/api/dashboard/routes?upload={with_file}")
    assert answer.json() == {"file": "routes.json", "routes": [route]}
    without = await upload(plane, {"model.py": b""})
    assert (await plane.api("GET", f"/api/dashboard/routes?upload={without}")).json()["routes"] is None
    broken = await upload(plane, {"routes.json": b"[{"})
    answer = await plane.api("GET", f"/api/dashboard/routes?upload={broken}")
    assert answer.status_code == 422
    assert answer.json()["fields"] == [{"field": "routes", "message": "routes.json in the model is not valid JSON"}]
    answer = await plane.api("GET", "/api/dashboard/routes?directory=relative/path")
    assert answer.json()["fields"] == [{"field": "model.directory",
                                        "message": "'relative/path' must be an absolute path on the server's machine"}]
