"""Prometheus: where to scrape (HTTP service discovery) and the control plane's own /metrics.

    GET /api/prometheus/targets   token needed; every running endpoint's /metrics, labelled job_id and job_name,
                                  and this control plane's /metrics, in Prometheus' http_sd_configs format
    GET /metrics                  open; jobs by status and this process's own metrics, Prometheus text

One scrape config then covers every endpoint, present and future (see docs/runtime.md). The targets need a token
because they name the jobs; the scrapes themselves must not carry it, since an endpoint runs the user's code and
would see the token. So the control plane's /metrics is open, and says nothing a job count does not.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Request, Response

from .auth import require_auth
from .states import JobStatus

targets_router = APIRouter(prefix="/api/prometheus", dependencies=[Depends(require_auth)], tags=["prometheus"])
metrics_router = APIRouter(tags=["prometheus"])

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


def _address(url: str) -> str:
    parts = urlsplit(url)
    return parts.netloc


@targets_router.get("/targets", summary="Scrape targets in Prometheus' HTTP service-discovery format")
async def targets(request: Request) -> list[dict]:
    platform = request.app.state.platform
    groups = [{
        "targets": [_address(platform.url)],
        "labels": {"__metrics_path__": "/metrics", "__scheme__": urlsplit(platform.url).scheme,
                   "component": "control-plane"},
    }]
    for job in platform.jobs.list():
        if JobStatus(job["status"]) is not JobStatus.RUNNING or not job.get("url"):
            continue
        groups.append({
            "targets": [_address(job["url"])],
            # A Ray Serve endpoint answers under its route prefix (/e/ID), a local one at its root.
            "labels": {"__metrics_path__": urlsplit(job["url"]).path + "/metrics",
                       "__scheme__": urlsplit(job["url"]).scheme,
                       "component": "endpoint", "job_id": job["id"], "job_name": job["name"]},
        })
    return groups


class _JobsCollector:
    """Jobs by status, read from the store at each scrape (nothing to keep in step)."""

    def __init__(self, platform):
        self.platform = platform

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        counts = {status.value: 0 for status in JobStatus}
        for job in self.platform.jobs.list():
            counts[job["status"]] = counts.get(job["status"], 0) + 1
        family = GaugeMetricFamily("trainml_jobs", "Jobs on this control plane, by status", labels=["status"])
        for status, n in counts.items():
            family.add_metric([status], n)
        yield family


def _registry(request: Request):
    state = request.app.state
    registry = getattr(state, "prometheus_registry", None)
    if registry is None:
        from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector

        # A private registry: the default one would be shared with anything else in this process.
        registry = CollectorRegistry()
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        registry.register(_JobsCollector(state.platform))
        state.prometheus_registry = registry
    return registry


@metrics_router.get("/metrics", summary="The control plane's own metrics (Prometheus text)",
                    response_class=Response)
async def metrics(request: Request) -> Response:
    from prometheus_client import generate_latest

    return Response(generate_latest(_registry(request)), media_type=PROMETHEUS_TEXT)
