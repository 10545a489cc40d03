"""Rough edges a new user met in the CLI (issue 24), held in process: the CLI through CliRunner against a closed
port (the `cli` fixture), the control plane's app through httpx (the `plane` fixture)."""

from __future__ import annotations

import pytest


def test_debug_after_a_global_option_with_a_value_prints_the_traceback(cli, tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("")
    code, out, err = cli("--ca-file", str(ca), "-d", "job", "get", "x")
    assert code == 1
    assert "Traceback (most recent call last)" in err, err


@pytest.mark.anyio
@pytest.mark.parametrize("ref, kind, path", [("a/b", "job", "/api/jobs/a%2Fb"), ("a?b", "job", "/api/jobs/a%3Fb"),
                                             ("x/y", "job", "/api/jobs/x%2Fy/logs"),
                                             ("m/n", "model", "/api/models/m%2Fn")])
async def test_a_reference_with_a_slash_or_question_mark_is_not_found(plane, ref, kind, path):
    response = await plane.api("GET", path)
    assert response.status_code == 404
    assert response.json()["message"] == f"{kind} {ref!r} not found (see the {kind} list)"


def test_a_file_uri_to_no_folder_is_refused_before_anything_is_sent(cli, tmp_path):
    route = '{"verb": "POST", "path": "/p", "file": "predict", "function": "predict"}'
    code, out, err = cli("job", "create", "endpoint", "x", "--git-uri", "file:///does/not/exist", "--route", route)
    assert code == 2, err  # a request to the closed port would have been exit 1
    assert err.splitlines()[-1] == ("Error: --git-uri: no folder /does/not/exist on this machine (a file:// "
                                    "repository is cloned from the machine the control plane runs on)")
    assert not (tmp_path / "home").exists()


@pytest.mark.anyio
async def test_a_file_uri_to_no_folder_is_refused_by_the_api_naming_the_field(plane, tmp_path):
    route = {"verb": "POST", "path": "/p", "file": "predict", "function": "predict"}
    for body in ({"name": "x", "model": {"source_type": "git", "source_uri": "file:///does/not/exist"},
                  "endpoint": {"routes": [route]}},):
        response = await plane.api("POST", "/api/jobs", json=body)
        assert response.status_code == 422, response.text
        assert response.json()["message"] == ("model.source_uri: no folder /does/not/exist on the control plane's "
                                              "machine (a file:// repository is cloned from there)")
    stored = await plane.api("POST", "/api/models", json={"name": "m", "source_type": "git",
                                                          "source_uri": "file:///does/not/exist"})
    assert stored.status_code == 422 and "source_uri: no folder /does/not/exist" in stored.json()["message"]
    assert (await plane.api("GET", "/api/jobs")).json() == []
