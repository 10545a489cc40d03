"""The control plane's API in process: health, the OpenAPI document, 404s and 405s, job payloads refused with 422
naming the field (and nothing created), the secrets API, and the models API from an upload (no network)."""

from __future__ import annotations

import io
import os
import tarfile

import pytest

from .conftest import MODELS, error_of

pytestmark = pytest.mark.anyio

ROUTE = {"verb": "POST", "path": "/predict", "file": "predict", "function": "predict",
         "body": [{"name": "text", "type": "str"}]}


def job(**overrides) -> dict:
    # A folder that is there (a file:// URI to none is refused for that): each test's own mistake is what is refused.
    payload = {"name": "j", "model": {"source_type": "git", "source_uri": MODELS.resolve().as_uri()},
               "endpoint": {"routes": [ROUTE]}}
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(payload.get(key), dict):
            payload[key] = {**payload[key], **value}
        else:
            payload[key] = value
    return payload


def tar_gz(files: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            archive.addfile(info)
    return buffer.getvalue()


ECHO = tar_gz({"predict.py": (MODELS / "echo" / "predict.py").read_bytes()})


async def test_health_is_open_and_names_the_home_and_version(plane):
    from trainml_cli import __version__

    health = await plane.api("GET", "/api/health", auth=False)
    assert health.json() == {"status": "ok", "version": __version__, "pid": os.getpid(), "home": str(plane.home),
                             "url": "http://plane"}


async def test_the_openapi_document_lists_every_api_route_and_the_job_schema(plane):
    from .test_control_plane_auth import TABLE

    document = (await plane.api("GET", "/openapi.json", auth=False)).json()
    for method, path in TABLE:
        if path.startswith("/api/"):
            assert method.lower() in document["paths"].get(path, {}), (method, path)
    assert {"JobCreate", "ModelCreate", "SecretValue"} <= set(document["components"]["schemas"])
    assert "Authorization: Bearer" in document["info"]["description"]


@pytest.mark.parametrize("path, message", [
    ("/api/nope", "no such API route: GET /api/nope"),
    ("/api/jobs/nope", "job 'nope' not found (see the job list)"),
    ("/api/jobs/nope/logs", "job 'nope' not found (see the job list)"),
    ("/api/jobs/nope/connect", "job 'nope' not found (see the job list)"),
    ("/api/models/nope", "model 'nope' not found (see the model list)"),
], ids=["route", "job", "job-logs", "job-connect", "model"])
async def test_what_does_not_exist_is_404_naming_it(plane, path, message):
    answer = await plane.api("GET", path)
    assert answer.status_code == 404
    assert error_of(answer) == {"error": "not_found", "message": message}


@pytest.mark.parametrize("method, path, allow", [
    ("DELETE", "/api/jobs", "GET, POST"), ("PUT", "/api/jobs/x", "DELETE, GET"), ("POST", "/api/health", "GET"),
    ("GET", "/api/secrets/x", "DELETE, PUT"), ("POST", "/api/models/x", "DELETE, GET, PATCH"),
], ids=["jobs", "job", "health", "secret", "model"])
async def test_a_wrong_verb_is_405_naming_the_verbs_the_path_takes(plane, method, path, allow):
    answer = await plane.api(method, path)
    assert answer.status_code == 405
    assert answer.headers["allow"] == allow
    assert answer.json() == {"error": "method_not_allowed", "message": f"{path} accepts {allow}, not {method}"}


@pytest.mark.parametrize("payload, status, message", [
    ({"name": "j"}, 422, "2 problems in the request:\nmodel: Field required\nendpoint: Field required"),
    (job(extra=1), 422, "extra: Extra inputs are not permitted"),
    (job(resources={"cpu_count": "four"}), 422, "resources.cpu_count: Input should be a valid integer"),
    (job(model={"source_type": "s3"}), 422, "model.source_type: Input should be 'local', 'git' or 'trainml'"),
    (job(type="notebook"), 422, "type: 'notebook' is not supported; this platform runs 'endpoint' jobs"),
    (job(endpoint={"routes": [{**ROUTE, "path": "predict"}]}), 422,
     "route 1 (POST predict): path: 'predict' must start with '/' and use only URL path characters"),
    (job(endpoint={"routes": []}), 422, "at least one route is required"),
    (job(endpoint={"routes": [ROUTE], "max_concurrency": 0}), 422,
     "endpoint.max_concurrency: 0 must be a whole number of at least 1"),
    (job(endpoint={"routes": [ROUTE], "timeout": -1}), 422,
     "endpoint.timeout: -1.0 must be a positive number of seconds"),
    (job(endpoint={"routes": [ROUTE], "replicas": 2, "max_replicas": 3}), 422,
     "endpoint.replicas: give either replicas (a fixed number) or min_replicas/max_replicas (autoscaling), not both"),
    (job(environment={"env": [{"key": "1X", "value": "v"}]}), 422,
     "environment.env[0].key: '1X' must be letters, digits and _, not starting with a digit"),
    (job(environment={"env": [{"key": "CUDA_VISIBLE_DEVICES", "value": "0"}]}), 422,
     "environment.env[0].key: CUDA_VISIBLE_DEVICES is set by the platform from the job's GPUs"),
    (job(model={"source_uri": "ext::sh -c touch% /tmp/pwned"}), 422, "model.source_uri: 'ext::sh -c touch% /tmp/pwned' "
     "is not a git URI"),
    (job(model={"source_uri": "--upload-pack=touch /tmp/x"}), 422,
     "model.source_uri: '--upload-pack=touch /tmp/x' starts with '-'; a git URI must not look like an option"),
    (job(model={"source_uri": "ftp://host/repo"}), 422,
     "model.source_uri: 'ftp://host/repo' uses ftp://; only https, http, ssh, git, file URIs are allowed"),
    (job(model={"git_ref": "--force"}), 422, "model.git_ref: '--force' is not a branch, tag or commit SHA"),
    (job(model={"source_type": "local", "source_uri": ""}), 422,
     "model.upload_id: required for source_type local (POST the packed folder to /api/uploads)"),
    (job(model={"source_type": "local", "upload_id": "../../etc"}), 422, "upload id '../../etc' is malformed"),
    (job(model={"source_type": "trainml", "source_uri": "nope"}), 404, "model 'nope' not found"),
], ids=["no-model-or-endpoint", "unknown-field", "cpu-count-type", "source-type", "job-type", "route-path",
        "no-routes", "max-concurrency", "timeout", "replicas-and-autoscaling", "env-key", "platform-env",
        "git-ext-transport", "git-option", "git-scheme", "git-ref-option", "local-without-upload", "upload-id",
        "stored-model-missing"])
async def test_a_bad_job_payload_is_refused_naming_the_field_and_creates_nothing(plane, payload, status, message):
    answer = await plane.api("POST", "/api/jobs", json=payload)
    assert answer.status_code == status, answer.text
    assert error_of(answer)["message"].startswith(message), answer.json()["message"]
    assert (await plane.api("GET", "/api/jobs")).json() == []
    assert not (plane.home / "jobs").exists() or not any((plane.home / "jobs").iterdir())


async def test_a_route_problem_comes_back_as_data_for_each_field(plane):
    routes = [ROUTE, {**ROUTE, "path": "/b", "body": [{"name": "x", "type": "string"}]}, {**ROUTE, "verb": "GET",
                                                                                         "function": "bad name"}]
    body = error_of(await plane.api("POST", "/api/jobs", json=job(endpoint={"routes": routes})))
    assert body["error"] == "invalid_route"
    assert body["fields"] == [
        {"route": 1, "field": "body[0].type",
         "message": "'string' is not one of str, int, float, bool, dict, list, file"},
        {"route": 2, "field": "function", "message": "'bad name' is not a valid Python function name"},
    ]


@pytest.mark.parametrize("name, value, status, message", [
    ("1BAD", "v", 422, "secret name: '1BAD' must be letters, digits and _, not starting with a digit (it becomes the "
                      "endpoint's environment variable)"),
    ("GOOD", "", 422, "secret GOOD: the value is empty"),
    ("GOOD", "v" * (64 * 1024 + 1), 422, "secret GOOD: the value is longer than 64 KiB"),
    ("GOOD", None, 422, "value: Field required"),
], ids=["name", "empty", "too-long", "no-value"])
async def test_a_bad_secret_is_422_and_not_stored(plane, name, value, status, message):
    answer = await plane.api("PUT", f"/api/secrets/{name}", json={} if value is None else {"value": value})
    assert answer.status_code == status and error_of(answer)["message"] == message
    assert (await plane.api("GET", "/api/secrets")).json() == []


async def test_secrets_are_listed_by_name_stored_privately_and_never_shown(plane):
    value = "s3cr3t-value-never-shown"
    stored = await plane.api("PUT", "/api/secrets/API_KEY", json={"value": value})
    assert stored.status_code == 200 and stored.json()["name"] == "API_KEY" and value not in stored.text
    listed = await plane.api("GET", "/api/secrets")
    assert [s["name"] for s in listed.json()] == ["API_KEY"] and value not in listed.text
    path = plane.home / "secrets" / "API_KEY"
    assert path.read_text() == value
    assert (path.stat().st_mode & 0o777, path.parent.stat().st_mode & 0o777) == (0o600, 0o700)
    replaced = await plane.api("PUT", "/api/secrets/API_KEY", json={"value": "new"})
    assert replaced.status_code == 200 and path.read_text() == "new"
    removed = await plane.api("DELETE", "/api/secrets/API_KEY")
    assert removed.json() == {"id": "API_KEY", "removed": True} and not path.exists()
    again = await plane.api("DELETE", "/api/secrets/API_KEY")
    assert again.status_code == 404
    assert error_of(again)["message"] == "no secret named 'API_KEY'; store one with `trainml secret create API_KEY`"


async def test_a_job_naming_a_missing_secret_is_422(plane):
    answer = await plane.api("POST", "/api/jobs", json=job(environment={"secrets": ["NOT_STORED"]}))
    assert answer.status_code == 422
    assert "environment.secrets[0]: no secret named 'NOT_STORED'" in error_of(answer)["message"]


async def upload(plane, data: bytes = ECHO) -> dict:
    answer = await plane.api("POST", "/api/uploads", content=data, headers={"content-type": "application/gzip"})
    assert answer.status_code == 201, answer.text
    return answer.json()


async def test_an_upload_becomes_a_stored_model_listed_renamed_and_removed(plane):
    received = await upload(plane)
    assert received["files"] == 1 and received["unpacked_size"] == len((MODELS / "echo" / "predict.py").read_bytes())
    created = await plane.api("POST", "/api/models", json={"name": "echo", "source_type": "local",
                                                           "upload_id": received["id"]})
    assert created.status_code == 201, created.text
    model = created.json()
    assert (model["name"], model["source_type"], model["status"]) == ("echo", "local", "ready")
    stored = plane.home / "models" / model["id"] / "predict.py"
    assert stored.read_bytes() == (MODELS / "echo" / "predict.py").read_bytes()
    assert [m["id"] for m in (await plane.api("GET", "/api/models")).json()] == [model["id"]]
    assert (await plane.api("GET", "/api/models/echo")).json()["id"] == model["id"]
    renamed = await plane.api("PATCH", "/api/models/echo", json={"name": "echo2"})
    assert renamed.json()["name"] == "echo2"
    assert (await plane.api("GET", "/api/models/echo")).status_code == 404
    removed = await plane.api("DELETE", f"/api/models/{model['id']}")
    assert removed.json() == {"id": model["id"], "removed": True}
    assert not (plane.home / "models" / model["id"]).exists()
    assert (await plane.api("GET", "/api/models")).json() == []


async def test_a_second_model_of_the_same_name_is_409_and_the_first_is_kept(plane):
    first = (await upload(plane))["id"]
    second = (await upload(plane))["id"]
    assert (await plane.api("POST", "/api/models", json={"name": "m", "source_type": "local",
                                                         "upload_id": first})).status_code == 201
    clash = await plane.api("POST", "/api/models", json={"name": "m", "source_type": "local", "upload_id": second})
    assert clash.status_code == 409
    assert error_of(clash)["message"] == "a model named 'm' already exists; remove it or choose another name"
    assert len((await plane.api("GET", "/api/models")).json()) == 1


@pytest.mark.parametrize("payload, message", [
    ({"name": "a/b", "source_type": "local", "upload_id": "0" * 32},
     "model name: 'a/b' must be at most 100 characters"),
    ({"name": " ", "source_type": "local"}, "model name: must not be empty"),
    ({"name": "m", "source_type": "trainml"}, "source_type: Input should be 'local' or 'git'"),
    ({"name": "m", "source_type": "local"}, "model: source_type local needs an upload_id"),
    ({"name": "m", "source_type": "git", "source_uri": "-oProxyCommand=x"},
     "source_uri: '-oProxyCommand=x' starts with '-'"),
    ({"name": "m", "source_type": "git", "source_uri": "https://h/r.git", "git_ref": "a b"},
     "git_ref: 'a b' is not a branch, tag or commit SHA"),
], ids=["slash-in-name", "empty-name", "source-type", "no-upload", "git-option", "git-ref"])
async def test_a_bad_model_is_422_naming_the_field_without_fetching_anything(plane, payload, message):
    answer = await plane.api("POST", "/api/models", json=payload)
    assert answer.status_code == 422 and error_of(answer)["message"].startswith(message), answer.text
    assert (await plane.api("GET", "/api/models")).json() == []


@pytest.mark.parametrize("archive, message", [
    (tar_gz({"../evil.py": b"x"}), "archive member '../evil.py': '..' would place it outside the model folder"),
    (tar_gz({"/etc/evil.py": b"x"}), "archive member '/etc/evil.py': absolute paths are refused"),
    (tar_gz({}, links={"predict.py": "/etc/passwd"}), "archive member 'predict.py': links are refused"),
    (b"not an archive", "archive: not a valid tar.gz"),
    (b"", "upload: the request body is empty; send a tar.gz (or zip) archive"),
], ids=["parent", "absolute", "link", "garbage", "empty"])
async def test_an_unsafe_or_broken_upload_is_422_naming_the_member(plane, archive, message):
    answer = await plane.api("POST", "/api/uploads", content=archive, headers={"content-type": "application/gzip"})
    assert answer.status_code == 422 and error_of(answer)["message"].startswith(message), answer.text


async def test_prices_gpus_and_backend_describe_this_machine(plane):
    prices = (await plane.api("GET", "/api/prices")).json()
    assert prices["unit"] == "credits per hour" and prices["cpu"] > 0
    gpus = (await plane.api("GET", "/api/gpus")).json()
    assert gpus and all(g["count"] == 0 and g["free"] == 0 for g in gpus)  # --gpus none
    assert (await plane.api("GET", "/api/backend")).json()["backend"] == "local"
