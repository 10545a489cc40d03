"""The Ray cluster's head, as the control plane sees it: its dashboard's HTTP API (port 8265), nothing else.

The control plane never imports ray (not installed with it, and a Python driver needs the cluster's exact Ray
and Python versions). Everything it does goes through these calls:

    GET/PUT /api/packages/gcs/_ray_pkg_<sha>.zip   is a package there (and pin it 600 s) / upload one
    GET/PUT /api/serve/applications/              every application's status / the full list of applications
    GET     /api/v0/logs/file?actor_id=..          a replica's output
    GET     /api/v0/logs?node_id=..&glob=..        a node's log files (captured calls, raycaptures.py)
    GET     /api/v0/logs/file?node_id=..&filename= one of them
    GET     /api/v0/actors?filter_keys=actor_id..  a replica's actor: alive or dead, and why it died
    GET     /api/cluster_status                    resources used and total
    GET     /nodes?view=summary                    each live node's address, host, totals and metrics export port

With token auth on (Ray's default since 2.60) every call carries `Authorization: Bearer TOKEN`. Calls run in
threads (requests), so a slow head never stalls the control plane's event loop; each is bounded by a timeout,
and a failure is a TrainMLError naming the head and the call.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from ...errors import ServerError, Unavailable, UsageError
from ...serveroptions import default

MAX_PACKAGE = 100 * 1024 * 1024  # what the dashboard's HTTP server accepts (DASHBOARD_CLIENT_MAX_SIZE)


@dataclass
class RayHead:
    address: str  # http://HEAD:8265
    token: str | None = None
    timeout: float = 30.0

    def __post_init__(self):
        import requests

        self.address = self.address.rstrip("/")
        self._session = requests.Session()
        if self.token:
            self._session.headers["Authorization"] = f"Bearer {self.token}"

    async def _call(self, method: str, path: str, ok=(200,), **kwargs):
        return await asyncio.to_thread(self._call_sync, method, path, ok, **kwargs)

    def _call_sync(self, method: str, path: str, ok, **kwargs):
        import requests

        url = self.address + path
        try:
            response = self._session.request(method, url, timeout=kwargs.pop("timeout", self.timeout), **kwargs)
        except requests.RequestException as exc:
            raise Unavailable(f"the Ray head at {self.address} does not answer ({method} {path}): "
                              f"{type(exc).__name__}") from None
        if response.status_code in (401, 403):
            raise UsageError(f"the Ray head at {self.address} refused our token ({response.status_code}); "
                             "check --ray-token-file (RAY_AUTH_MODE=token on the cluster)")
        if response.status_code not in ok:
            text = response.text.strip().splitlines()
            gist = text[-1] if text else ""
            raise ServerError(f"the Ray head at {self.address} answered {method} {path} with "
                              f"{response.status_code}: {gist[:300]}")
        return response

    # -- packages ---------------------------------------------------------------------------------------------

    async def has_package(self, name: str) -> bool:
        """Whether the package is in the cluster; asking also pins it for 600 s, long enough for a deploy."""
        response = await self._call("GET", f"/api/packages/gcs/{name}", ok=(200, 404))
        return response.status_code == 200

    async def upload_package(self, name: str, data: bytes) -> None:
        if len(data) > MAX_PACKAGE:
            raise UsageError(f"the model folder zips to {len(data) / 1024**2:.0f} MiB, more than the "
                             f"{MAX_PACKAGE // 1024**2} MiB Ray's dashboard accepts; keep large weights in object "
                             "storage or a shared file system and load them from the model code")
        await self._call("PUT", f"/api/packages/gcs/{name}", data=data, timeout=max(self.timeout, 120))

    async def keep_package(self, name: str, data: bytes) -> bool:
        """Make sure the cluster holds this package, pinned for a deploy: upload it unless it is there. True if
        it was uploaded."""
        if await self.has_package(name):
            return False
        await self.upload_package(name, data)
        if not await self.has_package(name):  # pins it for the deploy
            raise UsageError(f"the Ray cluster at {self.address} did not keep the uploaded package {name}")
        return True

    # -- Serve ------------------------------------------------------------------------------------------------

    async def applications(self) -> dict:
        """{name: status document} for every Serve application ({} while Serve is not running)."""
        response = await self._call("GET", "/api/serve/applications/")
        return (response.json() or {}).get("applications") or {}

    async def serve_details(self) -> dict:
        return (await self._call("GET", "/api/serve/applications/")).json() or {}

    async def deploy(self, document: dict) -> None:
        """PUT the full list of applications: any declarative one left out is deleted."""
        await self._call("PUT", "/api/serve/applications/", json=document)

    # -- logs and resources -----------------------------------------------------------------------------------

    async def actor_log(self, actor_id: str, suffix: str = "out", lines: int = 1000) -> list[str]:
        """The last `lines` lines an actor (a replica) wrote to its stdout (`out`) or stderr (`err`)."""
        response = await self._call("GET", "/api/v0/logs/file", ok=(200, 404, 500), timeout=10,
                                    params={"actor_id": actor_id, "suffix": suffix, "lines": lines})
        if response.status_code != 200:
            return []
        return response.content.decode("utf-8", "replace").splitlines()

    async def follow_log(self, actor_id: str, suffix: str):
        """Every line of an actor's `out` or `err` file, then each new one as it is written (an async iterator).

        On the event loop, not in a thread: cancelling the task that iterates ends it at once (a blocking
        reader in a thread cannot be interrupted without a lock it holds).
        """
        parts = urlsplit(self.address)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        query = urlencode({"actor_id": actor_id, "suffix": suffix, "lines": -1})
        auth = f"Authorization: Bearer {self.token}\r\n" if self.token else ""
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(parts.hostname, port, ssl=parts.scheme == "https"), self.timeout)
        try:
            writer.write(f"GET {parts.path}/api/v0/logs/stream?{query} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                         f"{auth}Connection: close\r\n\r\n".encode())
            await writer.drain()
            status = (await asyncio.wait_for(reader.readline(), self.timeout)).split(b" ", 2)
            if len(status) < 2 or status[1] != b"200":
                raise OSError(f"log stream answered {b' '.join(status[1:]).decode(errors='replace').strip()}")
            chunked = False
            while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                chunked |= line.lower().startswith(b"transfer-encoding:") and b"chunked" in line.lower()
            pending = b""
            while True:
                if chunked:
                    size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        break
                    data = await reader.readexactly(size)
                    await reader.readexactly(2)
                else:
                    data = await reader.read(65536)
                    if not data:
                        break
                pending += data
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    yield line.rstrip(b"\r").decode("utf-8", "replace")
            if pending:
                yield pending.decode("utf-8", "replace")
        finally:
            writer.close()

    async def node_ids(self) -> list[str]:
        """The id of every live node."""
        response = await self._call("GET", "/nodes?view=summary")
        nodes = ((response.json() or {}).get("data") or {}).get("summary") or []
        return [raylet["nodeId"] for raylet in (node.get("raylet") or {} for node in nodes)
                if raylet.get("state") == "ALIVE" and raylet.get("nodeId")]

    async def log_files(self, node_id: str, glob: str) -> list[str]:
        """The files of a node's log folder matching `glob` (a path relative to it)."""
        response = await self._call("GET", "/api/v0/logs", timeout=10,
                                    params={"node_id": node_id, "glob": glob, "timeout": 10})
        found = ((response.json() or {}).get("data") or {}).get("result") or {}
        return [name for names in found.values() for name in names]

    async def log_file(self, node_id: str, filename: str) -> bytes | None:
        """A whole file of a node's log folder; None when it is not there (any more)."""
        response = await self._call("GET", "/api/v0/logs/file", ok=(200, 404, 500), timeout=60,
                                    params={"node_id": node_id, "filename": filename, "lines": -1})
        return response.content if response.status_code == 200 else None

    async def actor(self, actor_id: str) -> dict | None:
        """The state API's record of an actor (state ALIVE, DEAD, ...; death_cause), None if it has none."""
        response = await self._call("GET", "/api/v0/actors", timeout=10, params={
            "filter_keys": "actor_id", "filter_predicates": "=", "filter_values": actor_id, "detail": "true"})
        found = (((response.json() or {}).get("data") or {}).get("result") or {}).get("result") or []
        return found[0] if found else None

    async def resources(self) -> dict:
        """{resource: [used, total]} over the whole cluster: CPU, GPU, memory, ..."""
        response = await self._call("GET", "/api/cluster_status")
        data = (response.json() or {}).get("data") or {}
        return ((data.get("clusterStatus") or {}).get("loadMetricsReport") or {}).get("usage") or {}

    def cluster_sync(self) -> tuple[list, dict]:
        """(each node's summary, {node id: {resource: [used, total]}}), in the caller's thread: what
        raycluster.nodes reads the cluster's GPUs and memory from."""
        nodes = self._call_sync("GET", "/nodes?view=summary", (200,)).json() or {}
        summary = (nodes.get("data") or {}).get("summary")
        data = (self._call_sync("GET", "/api/cluster_status", (200,)).json() or {}).get("data") or {}
        report = (data.get("clusterStatus") or {}).get("loadMetricsReport") or {}
        return summary or [], report.get("usageByNode") or {}

    async def cluster(self) -> tuple[list, dict]:
        return await asyncio.to_thread(self.cluster_sync)

    async def metrics_addresses(self) -> list[tuple[str, int]]:
        """(address, metrics export port) of every live node: where Ray's agent exports the node's metrics."""
        response = await self._call("GET", "/nodes?view=summary")
        nodes = ((response.json() or {}).get("data") or {}).get("summary") or []
        addresses = []
        for node in nodes:
            raylet = node.get("raylet") or {}
            if raylet.get("state") == "ALIVE" and raylet.get("metricsExportPort"):
                addresses.append((raylet.get("nodeManagerAddress") or node.get("ip"), int(raylet["metricsExportPort"])))
        return addresses

    async def version(self) -> str:
        return (await self._call("GET", "/api/version")).json().get("ray_version", "?")


@dataclass(frozen=True)
class RayOptions:
    """`trainml server run --backend ray ...`"""

    address: str  # the head's dashboard, http://HEAD:8265
    token: str | None = None
    serve_host: str = default("ray_serve_host")  # where Serve's HTTP proxies listen (set when Serve first starts)
    serve_port: int = default("ray_serve_port")
    deploy_timeout: float = default("ray_deploy_timeout")  # seconds a deploy may take before the job fails
    # seconds a stopping replica's calls get to finish (Serve's graceful shutdown)
    stop_grace: float = default("stop_grace")

    @property
    def serve_url(self) -> str:
        host = self.serve_host
        if host in ("0.0.0.0", "::", ""):  # listening everywhere: callers reach it where the head is
            host = urlsplit(self.address).hostname or "127.0.0.1"
        return f"http://[{host}]:{self.serve_port}" if ":" in host else f"http://{host}:{self.serve_port}"
