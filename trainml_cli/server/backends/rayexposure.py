"""Where Ray Serve listens, held to what the control plane was told (`--ray-serve-host`, `--ray-serve-port`).

What listens where, read in Ray 2.60's source (serve/_private/haproxy.py, haproxy_templates.py, constants.py,
replica.py) and measured on a one-node cluster in HAProxy mode (RAY_SERVE_ENABLE_HA_PROXY=1) started by a
control plane with `--ray-serve-host 127.0.0.1`:

- on the Serve host, because the control plane sends it as `http_options.host`: HAProxy's frontend (the Serve
  port), each replica's own HTTP port (direct ingress, 30000-31000; HAProxy routes to them) and the fallback
  proxy (8500). `RAY_SERVE_DEFAULT_HTTP_HOST` is only a default, which HAProxy mode turns into 0.0.0.0: a host
  we send wins.
- on every interface whatever the Serve host: HAProxy's stats page (`RAY_SERVE_HAPROXY_STATS_PORT`, 8404)
  and its Prometheus metrics (`RAY_SERVE_HAPROXY_METRICS_PORT`, 9101). Ray's template binds them to `*`; only
  their ports can be set, where the cluster starts, so docs/ray.md says to firewall them, and `server start
  --backend ray` warns (tls.ray_exposure_warnings).
- HAProxy's files (config, admin socket, server state) go under /tmp/haproxy-serve/NODE_ID unless
  `RAY_SERVE_HAPROXY_CONFIG_FILE_LOC`, `_SOCKET_PATH`, `_SERVER_STATE_BASE`, `_SERVER_STATE_FILE` and
  `_METRICS_SOCKET_PATH` name another folder (set where the cluster starts; Ray adds the node id, and a socket
  path must be at most 97 characters). The admin socket is mode 666 with admin level.

Serve takes its HTTP options once, when it first starts; a later deploy with others is run with the old ones
(Ray's dashboard only logs a warning). So before it adds an application the control plane compares what Serve
listens on with what it was told, and refuses the deploy when they differ: the endpoint would be reachable
where the operator did not say, or not where its URL says.
"""

from __future__ import annotations

from ...errors import UsageError


def check_listening(details: dict, host: str, port: int) -> None:
    """Raise UsageError when a running Serve listens elsewhere than `host`:`port` (`details`: the head's
    GET /api/serve/applications/; no `http_options` there means Serve is not running yet, and our deploy
    starts it with ours)."""
    options = details.get("http_options") or {}
    if not options or (options.get("host"), options.get("port")) == (host, port):
        return
    theirs = f"{options.get('host')}:{options.get('port')}"
    raise UsageError(f"Ray Serve on the cluster listens on {theirs} (fixed when Serve first started), not on "
                     f"{host}:{port} as --ray-serve-host and --ray-serve-port say; start the control plane with "
                     f"--ray-serve-host {options.get('host')} --ray-serve-port {options.get('port')}, or shut Serve "
                     f"down on the cluster (`serve shutdown`) so that the next deploy starts it on {host}:{port}")
