"""The control plane's HTTP surface: auth, errors as JSON, the OpenAPI document, health, metrics, files in home."""

from __future__ import annotations

import json
import os
import stat

import requests

from conftest import MODELS, route, run

PROTECTED = [
    ("GET", "/api/jobs"), ("POST", "/api/jobs"), ("GET", "/api/jobs/x"), ("DELETE", "/api/jobs/x"),
    ("POST", "/api/jobs/x/stop"), ("POST", "/api/jobs/x/start"), ("GET", "/api/jobs/x/wait?status=running"),
    ("GET", "/api/jobs/x/logs"), ("GET", "/api/jobs/x/logs/stream"), ("GET", "/api/jobs/x/metrics"),
    ("POST", "/api/uploads"), ("GET", "/api/models"), ("POST", "/api/models"), ("GET", "/api/models/x"),
    ("DELETE", "/api/models/x"), ("GET", "/api/prices"), ("GET", "/api/prometheus/targets"),
]


def test_the_running_control_plane_needs_the_token(shared_plane):
    # Every route is walked in process (tests/unit/test_control_plane_auth.py); this is the real process's answer.
    method, path = "GET", "/api/jobs"
    missing = shared_plane.api(method, path, auth=False)
    assert missing.status_code == 401
    assert missing.json()["error"] == "unauthorized"
    assert "Authorization: Bearer <token>" in missing.json()["message"]
    assert missing.headers["www-authenticate"] == "Bearer"
    wrong = shared_plane.api(method, path, auth=False, headers={"Authorization": "Bearer not-the-token"})
    assert wrong.status_code == 401
    assert "the API token is wrong" in wrong.json()["message"]


def test_the_openapi_document_lists_every_route(shared_plane):
    document = requests.get(shared_plane.url + "/openapi.json", timeout=10).json()
    paths = document["paths"]
    for method, path in PROTECTED:
        template = path.split("?")[0].replace("/x", "/{job}" if "/jobs/" in path else "/{model}")
        assert method.lower() in paths[template], (method, template)
    assert "JobCreate" in document["components"]["schemas"]
    assert "Authorization: Bearer" in document["info"]["description"]


def test_health_is_open_and_names_the_home(shared_plane):
    health = requests.get(shared_plane.url + "/api/health", timeout=10).json()
    assert health["status"] == "ok"
    assert health["home"] == str(shared_plane.home)
    assert health["pid"] == shared_plane.process.pid
    assert health["url"] == shared_plane.url


def test_the_home_holds_a_private_token_and_the_servers_address(shared_plane):
    token_mode = stat.S_IMODE(os.stat(shared_plane.home / "token").st_mode)
    assert token_mode == 0o600
    info = json.loads((shared_plane.home / "server.json").read_text())
    assert info["url"] == shared_plane.url and info["pid"] == shared_plane.process.pid
    assert info["url"].startswith("http://127.0.0.1:")
    assert (shared_plane.home / "trainml.db").exists()


def test_errors_are_json_with_their_kind(control_plane, tmp_path):
    missing = control_plane.api("GET", "/api/jobs/nope")
    assert missing.status_code == 404
    assert missing.json() == {"error": "not_found", "message": "job 'nope' not found (see the job list)"}
    unknown = control_plane.api("GET", "/api/nothing-here")
    assert unknown.status_code == 404 and unknown.json()["error"] == "not_found"
    # A folder that is there but holds no repository: created, then failed at the clone.
    model = {"source_type": "git", "source_uri": tmp_path.as_uri()}
    job = control_plane.api("POST", "/api/jobs", json={"name": "w", "endpoint": {"routes": [route()]},
                                                       "model": model}).json()
    bad_status = control_plane.api("GET", f"/api/jobs/{job['id']}/wait", params={"status": "runing"})
    assert bad_status.status_code == 422
    assert bad_status.json()["message"].startswith("status: 'runing' is not one of 'new'")
    shape = control_plane.api("POST", "/api/jobs", json={"name": "x"})
    assert shape.status_code == 422
    assert shape.json()["error"] == "invalid"
    assert "model: Field required" in shape.json()["details"]
    assert "endpoint: Field required" in shape.json()["details"]
    not_json = control_plane.api("POST", "/api/jobs", data="{", headers={"Content-Type": "application/json"})
    assert not_json.status_code == 422


def test_metrics_are_proxied_from_the_endpoint(control_plane):
    async def scenario():
        async with control_plane.client() as client:
            job = await client.jobs.create("echo", model={"source_type": "local", "source_uri": str(MODELS / "echo")},
                                           endpoint={"routes": [route()]}, wait=True)
            for _ in range(3):
                await job.call("/predict", {"text": "m"})
            return job.id

    job_id = run(scenario())
    body = control_plane.api("GET", f"/api/jobs/{job_id}/metrics").json()
    assert body["status"] == "running"
    assert body["metrics"]["requests"] >= 3
    control_plane.api("POST", f"/api/jobs/{job_id}/stop")
    assert control_plane.api("GET", f"/api/jobs/{job_id}/metrics").json()["metrics"] is None


def test_the_price_table_is_published(shared_plane):
    prices = shared_plane.api("GET", "/api/prices").json()
    assert prices["cpu"] == 0.01 and prices["gpu"]["rtx3090"] == 0.35 and prices["unit"] == "credits per hour"


def test_job_records_follow_trainmls_payload(control_plane):
    async def scenario():
        async with control_plane.client() as client:
            job = await client.jobs.create(
                "shape", model={"source_type": "local", "source_uri": str(MODELS / "echo")},
                endpoint={"routes": [route()], "max_concurrency": 2, "max_queue": 5},
                resources={"cpu_count": 1, "disk_size": 20}, environment={"env": [{"key": "A", "value": "1"}]},
            )
            await job.remove(force=True)
            return job.dict

    record = run(scenario())
    assert record["type"] == "endpoint"
    assert record["resources"] == {"gpu_types": ["cpu"], "gpu_count": 0, "cpu_count": 1, "disk_size": 20,
                                   "max_price": 10.0}
    assert record["model"]["source_type"] == "local" and record["model"]["source_uri"] == str(MODELS / "echo")
    assert record["endpoint"]["routes"][0]["path"] == "/predict"
    assert record["endpoint"]["max_concurrency"] == 2 and record["endpoint"]["max_queue"] == 5
    assert record["environment"] == {"env": [{"key": "A", "value": "1"}], "packages": {"pip": []}, "requirements": None,
                                     "python": None, "type": None, "interpreter": None, "note": None, "secrets": []}
    for key in ("id", "name", "status", "reason", "url", "restarts", "run_time", "credits", "hourly_rate", "created"):
        assert key in record


def test_the_control_plane_answers_431_past_64_kib_of_headers_and_closes_slow_headers(control_plane):
    """With --host the control plane faces the endpoints' clients: the same header cap and header-read timeout."""
    import socket
    import time
    from urllib.parse import urlsplit

    huge = control_plane.api("GET", "/api/jobs", headers={f"x-filler-{i}": "v" * 1000 for i in range(70)})
    assert huge.status_code == 431
    assert huge.json()["error"] == "headers_too_large" and "control plane's limit" in huge.json()["message"]
    assert control_plane.api("GET", "/api/jobs", headers={f"x-filler-{i}": "v" * 1000 for i in range(50)}).ok

    address = urlsplit(control_plane.url)
    sock = socket.create_connection((address.hostname, address.port), timeout=30)
    began = time.monotonic()
    sock.sendall(b"GET /api/health HTTP/1.1\r\nhost: x\r\n")
    closed_after = None
    while closed_after is None and time.monotonic() - began < 30:  # a header byte every 0.5 s
        assert control_plane.api("GET", "/api/health").ok, "other clients are served meanwhile"
        try:
            sock.sendall(b"x")
            sock.settimeout(0.5)
            if sock.recv(1024) == b"":
                closed_after = time.monotonic() - began
        except socket.timeout:
            continue
        except OSError:
            closed_after = time.monotonic() - began
    sock.close()
    assert closed_after is not None and 8 < closed_after < 20, closed_after
