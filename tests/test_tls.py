"""HTTPS end to end with a certificate made by openssl in the test: the control plane, its endpoints, the SDK
and the CLI, verification always on, and the warning a start beyond loopback prints."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import requests

from conftest import MODELS, route, run
from trainml_cli.tls import exposure_warnings

ECHO = {"source_type": "local", "source_uri": str(MODELS / "echo")}


def make_certificate(folder, name="server"):
    cert, key = folder / f"{name}.pem", folder / f"{name}-key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


@pytest.fixture
def certificate(tmp_path):
    return make_certificate(tmp_path)


def trainml(env_home, url, *argv, extra_env=None):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TRAINML_HOME": str(env_home), "TRAINML_API_URL": url,
           "NO_COLOR": "1", "PYTHONPATH": os.environ.get("PYTHONPATH", ""), **(extra_env or {})}
    return subprocess.run([sys.executable, "-m", "trainml_cli", *argv], capture_output=True, text=True, env=env,
                          timeout=120)


def test_the_control_plane_its_endpoints_the_sdk_and_the_cli_speak_https(start_control_plane, certificate, tmp_path):
    cert, key = certificate
    plane = start_control_plane("--tls-certfile", str(cert), "--tls-keyfile", str(key))
    assert plane.url.startswith("https://127.0.0.1:")
    assert json.loads((plane.home / "server.json").read_text())["url"] == plane.url
    with pytest.raises(requests.exceptions.SSLError):  # verification is on: an unknown CA is refused
        requests.get(plane.url + "/api/health", timeout=10)
    with pytest.raises(requests.exceptions.ConnectionError):  # and plain HTTP is not served
        requests.get(plane.url.replace("https://", "http://") + "/api/health", timeout=10)

    async def scenario():
        async with plane.client() as client:  # trusts the home's self-signed certificate
            job = await client.jobs.create("secure", model=ECHO, endpoint={"routes": [route()], "auth": True})
            await job.wait_for("running", timeout=60)
            assert job.url.startswith("https://127.0.0.1:")
            assert await job.call("/predict", {"text": "over tls"}) == {"echo": "over tls"}
            return job, (await job.connection())["key"]

    job, endpoint_key = run(scenario())
    answer = requests.post(job.url + "/predict", json={"text": "x"}, verify=str(cert),
                           headers={"Authorization": f"Bearer {endpoint_key}"}, timeout=10)
    assert answer.json() == {"echo": "x"}
    assert requests.get(job.url + "/ping", verify=str(cert), timeout=10).status_code == 200
    targets = plane.api("GET", "/api/prometheus/targets").json()
    assert {group["labels"]["__scheme__"] for group in targets} == {"https"}

    # The CLI from elsewhere (no home of this server): refused without the CA, fine with --ca-file.
    elsewhere = tmp_path / "elsewhere"
    refused = trainml(elsewhere, plane.url, "job", "list", extra_env={"TRAINML_API_TOKEN": plane.token})
    assert refused.returncode == 1
    assert "cannot verify the control plane's certificate" in refused.stderr and "--ca-file" in refused.stderr
    assert "Traceback" not in refused.stderr
    listed = trainml(elsewhere, plane.url, "--ca-file", str(cert), "job", "list",
                     extra_env={"TRAINML_API_TOKEN": plane.token})
    assert listed.returncode == 0 and "secure" in listed.stdout
    connected = trainml(elsewhere, plane.url, "--ca-file", str(cert), "job", "connect", "secure",
                        extra_env={"TRAINML_API_TOKEN": plane.token})
    assert f"Endpoint is running at:  {job.url}" in connected.stdout
    assert f"curl -X POST {job.url}/predict -H 'Authorization: Bearer {endpoint_key}'" in connected.stdout
    called = trainml(elsewhere, plane.url, "job", "call", "secure", "/predict", "--data", '{"text": "ca bundle"}',
                     extra_env={"TRAINML_API_TOKEN": plane.token, "REQUESTS_CA_BUNDLE": str(cert)})
    assert called.returncode == 0 and "ca bundle" in called.stdout, called.stderr


def test_a_certificate_that_does_not_load_is_a_usage_error_naming_it(tmp_path, certificate):
    cert, _key = certificate
    _other_cert, other_key = make_certificate(tmp_path, "other")
    home = tmp_path / "home"
    for args, message in (
        (["--tls-certfile", str(cert)], "--tls-certfile and --tls-keyfile go together"),
        (["--tls-certfile", str(cert), "--tls-keyfile", str(tmp_path / "missing.pem")], "missing.pem' does not exist"),
        (["--tls-certfile", str(cert), "--tls-keyfile", str(other_key)], "do not load together"),
    ):
        result = subprocess.run([sys.executable, "-m", "trainml_cli", "--home", str(home), "server", "run", *args],
                                capture_output=True, text=True, timeout=60,
                                env={**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", "")})
        assert result.returncode == 2, result.stderr
        assert message in result.stderr and "Traceback" not in result.stderr
    assert not (home / "server.json").exists()


def test_a_start_beyond_loopback_warns_what_is_exposed():
    assert exposure_warnings("127.0.0.1", tls=False) == [] and exposure_warnings("::1", tls=False) == []
    plain = exposure_warnings("0.0.0.0", tls=False)
    assert "without TLS" in plain[0] and "API token" in plain[0] and "--tls-certfile" in plain[0]
    assert "without --auth" in plain[1]
    secured = exposure_warnings("192.0.2.10", tls=True)
    assert len(secured) == 1 and "without --auth" in secured[0]
