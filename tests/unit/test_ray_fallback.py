"""The Ray fallback application's answers (runtime/fallback.py), in process: what a caller of a job's URL gets on Ray
while no application of that job serves it. Serve hands the app its prefix as root_path (`/e`), as here; that
Serve routes those calls to it, in HAProxy mode, is tests/test_ray.py's."""

from __future__ import annotations

import httpx
import pytest
from asgi_lifespan import LifespanManager

from trainml_cli.runtime.fallback import Fallback

pytestmark = pytest.mark.anyio


async def _client(app) -> tuple[LifespanManager, httpx.AsyncClient]:
    manager = LifespanManager(app)
    await manager.__aenter__()
    return manager, httpx.AsyncClient(transport=httpx.ASGITransport(app=app, root_path="/e"),
                                      base_url="http://ray")


async def test_a_listed_job_gets_503_with_retry_after_and_any_other_url_our_json_404():
    app = Fallback({"job1": "stopping", "job2": "starting", "job3": "updating", "job4": "running"})
    manager, client = await _client(app)
    try:
        stopping = await client.post("/e/job1/predict", json={"text": "x"}, headers={"X-Request-Id": "mine"})
        assert stopping.status_code == 503 and stopping.headers["retry-after"] == "1"
        assert stopping.json() == {"error": "unavailable", "message": "the endpoint is stopping; retry in a moment",
                                   "request_id": "mine"}
        for job, says in (("job2", "starting"), ("job3", "being updated"), ("job4", "not routed yet")):
            answer = await client.get(f"/e/{job}/ping")
            assert answer.status_code == 503 and says in answer.json()["message"]
        for path in ("/e/gone/predict", "/e/gone", "/e", "/e/", "/e/job1x/predict"):
            answer = await client.get(path)
            assert answer.status_code == 404, path
            body = answer.json()
            assert (body["error"], body["message"]) == ("not_found", "no job at this URL")
            assert body["request_id"] == answer.headers["x-request-id"]
            # Nothing about the jobs it knows: no id, no state.
            assert not any(word in answer.text for word in ("job1", "job2", "stopping", "starting"))

        app.states = {}  # reconfigured once the job is gone
        assert (await client.post("/e/job1/predict", json={})).status_code == 404
    finally:
        await client.aclose()
        await manager.__aexit__(None, None, None)
