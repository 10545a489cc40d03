"""An endpoint's metrics on Ray, summed over its replicas, from the metrics Ray's agents export on every node.

A scrape through Serve's proxy reaches one replica, so each replica publishes its totals itself (see
runtime/serve_entry.py): one gauge, `ray_trainml_replica_totals{application, replica, field}`, which Ray's agent
on the replica's node exports with the node's other metrics. Here the control plane asks the head for the live
nodes and their metrics ports, reads each node's export, keeps our gauge's lines and sums the replicas of each
application (contracts.sum_totals), in the shape the local backend's /metrics?format=json gives.

The numbers lag: a replica publishes every 2 s and Ray's agent exports at its own interval (10 s by default,
`RAY_metrics_report_interval_ms`). One reading of the nodes serves every job for FRESH seconds. The scrape does not
carry the Ray token: the export port is plain Prometheus and never needs it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from urllib.parse import urlsplit

from ...contracts import RAY_METRIC_PREFIX, REPLICA_TOTALS_GAUGE, sum_totals
from .probes import http_get
from .rayhead import RayHead

log = logging.getLogger("trainml.server")

GAUGE = RAY_METRIC_PREFIX + REPLICA_TOTALS_GAUGE  # as Ray's exporter names it
FRESH = 2.0  # seconds one reading of the nodes is used for
NODES_FRESH = 30.0  # seconds the list of nodes is used for
SCRAPE_TIMEOUT = 3.0
MAX_EXPORT = 64 * 1024 * 1024  # a node's whole export is read; past this it is not ours to parse


class ReplicaTotals:
    def __init__(self, head: RayHead):
        self.head = head
        self._nodes: tuple[float, list[tuple[str, int]]] | None = None
        self._reading: tuple[float, dict | None] | None = None
        self._lock = asyncio.Lock()

    async def of(self, application: str) -> dict | None:
        """The application's totals summed over the replicas Ray exports; None when no node exports any."""
        apps = await self._read()
        if apps is None or application not in apps:
            return None
        return sum_totals(list(apps[application].values()))

    async def _read(self) -> dict | None:
        async with self._lock:  # every job asks at once each sampling round: one reading serves them all
            if self._reading is not None and time.monotonic() - self._reading[0] < FRESH:
                return self._reading[1]
            apps = await self._scrape_all()
            self._reading = (time.monotonic(), apps)
            return apps

    async def _scrape_all(self) -> dict | None:
        try:
            if self._nodes is None or time.monotonic() - self._nodes[0] > NODES_FRESH:
                self._nodes = (time.monotonic(), await self.head.metrics_addresses())
        except Exception as exc:  # the head is down or refuses: no reading this time
            log.debug("ray metrics: the node list is unavailable: %s", exc)
            return None
        texts = await asyncio.gather(*(asyncio.to_thread(scrape, host, port) for host, port in self._nodes[1]))
        if all(text is None for text in texts):
            self._nodes = None  # ask for the nodes again next time: they may have changed
            return None
        apps: dict[str, dict[str, dict[str, float]]] = {}
        for text in texts:
            if text:
                _collect(text, apps)
        return apps


def scrape(host: str, port: int) -> str | None:
    """A node's whole metrics export (None when it does not answer, or is larger than MAX_EXPORT)."""
    import requests

    try:
        response = requests.get(f"http://{host}:{port}/metrics", timeout=SCRAPE_TIMEOUT, stream=True)
        if response.status_code != 200:
            return None
        body = response.raw.read(MAX_EXPORT + 1, decode_content=True)
        return None if len(body) > MAX_EXPORT else body.decode("utf-8", "replace")
    except (requests.RequestException, OSError):
        return None


def _collect(text: str, apps: dict) -> None:
    """Our gauge's samples in a node's export, into apps[application][replica][field]. Only our lines are parsed
    (an export holds every Ray metric of the node: hundreds of KB)."""
    from prometheus_client.parser import text_string_to_metric_families

    lines = [line for line in text.splitlines() if line.startswith(GAUGE + "{")]
    if not lines:
        return
    for family in text_string_to_metric_families("\n".join(lines) + "\n"):
        for sample in family.samples:
            labels = sample.labels
            application, replica, field = labels.get("application"), labels.get("replica"), labels.get("field")
            if application and replica and field:
                apps.setdefault(application, {}).setdefault(replica, {})[field] = sample.value


async def one_replica(url: str) -> dict | None:
    """One replica's own counters, through Serve's proxy at the endpoint's `url`; None when it does not answer."""
    parts = urlsplit(url)
    status, body = await http_get(parts.hostname, parts.port, parts.path + "/metrics?format=json", timeout=2.0)
    try:
        return json.loads(body) if status == 200 else None
    except ValueError:
        return None
