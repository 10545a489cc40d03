"""TLS for serving beyond this machine: the certificate check, what clients verify against, and the warning.

A leaf (the standard library only): the CLI, the SDK, the control plane and the endpoint runtime all use it.

- Servers (`trainml server run --tls-certfile F --tls-keyfile F`, and every endpoint it starts) check the pair
  at start, so a wrong path or a key that does not belong to the certificate is one line naming the file, not a
  traceback from deep in uvicorn.
- Clients verify the server's certificate against, in order: `--ca-file` (TRAINML_CA_FILE); the certificate
  of a control plane found through TRAINML_HOME when that certificate is its own authority (self-signed:
  nothing else could vouch for it); REQUESTS_CA_BUNDLE (requests reads it itself); the system's CAs.
  Verification is never turned off. The choice is passed with every request, since requests lets
  REQUESTS_CA_BUNDLE override a session's own setting.
"""

from __future__ import annotations

import ipaddress
import os
import ssl

from .errors import UsageError

LOOPBACK = ("127.0.0.1", "::1", "localhost")


def check_pair(certfile: str | None, keyfile: str | None, where: str = "--tls-certfile") -> tuple[str, str] | None:
    """(certfile, keyfile) as absolute paths once they load together; None without TLS. Raises UsageError."""
    if not certfile and not keyfile:
        return None
    if not certfile or not keyfile:
        raise UsageError("--tls-certfile and --tls-keyfile go together: give both, or neither")
    certfile, keyfile = os.path.abspath(certfile), os.path.abspath(keyfile)
    for flag, path in (("--tls-certfile", certfile), ("--tls-keyfile", keyfile)):
        if not os.path.isfile(path):
            raise UsageError(f"{flag} {path}: no such file")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(certfile, keyfile)
    except ssl.SSLError as exc:
        raise UsageError(f"--tls-certfile {certfile} and --tls-keyfile {keyfile} do not load together: "
                         f"{exc.reason or exc} (both must be PEM, the key "
                         "unencrypted and the certificate's own)") from None
    except OSError as exc:
        raise UsageError(f"{where} {certfile}: {exc.strerror or exc}") from None
    return certfile, keyfile


def self_signed(certfile: str) -> bool:
    """True when the certificate is its own authority (a CA certificate that verifies itself)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cafile=certfile)
    except (ssl.SSLError, OSError):
        return False
    return bool(context.get_ca_certs())


def client_verify(ca_file: str | None, certfile: str | None = None):
    """What `requests` verifies an HTTPS server with (a path or True); see the module's docstring. `certfile`: the
    certificate a control plane found through TRAINML_HOME serves (its contracts.ServerRecord's)."""
    if ca_file:
        return os.path.abspath(ca_file)
    if certfile and self_signed(certfile):
        return certfile
    return True


def loopback_client_context() -> ssl.SSLContext:
    """For the control plane's probes of its own endpoints over loopback (/ping, /metrics): encrypted, not
    verified. The endpoint is the control plane's child on 127.0.0.1, serving the control plane's own
    certificate, whose name is the public one, never 127.0.0.1."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def is_loopback(host: str) -> bool:
    if host in LOOPBACK:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure_warnings(host: str, tls: bool) -> list[str]:
    """What a control plane listening on `host` exposes, one line each; none on loopback."""
    if is_loopback(host):
        return []
    lines = []
    if not tls:
        lines.append(f"warning: listening on {host} without TLS: the API token, dashboard sign-ins, endpoint keys "
                     "and every request and answer cross the network in plain text "
                     "(give --tls-certfile and --tls-keyfile)")
    lines.append(f"warning: listening on {host}: anyone who can reach this machine can call every endpoint "
                 "created without --auth; create endpoints with --auth to give them a key")
    return lines


def ray_exposure_warnings(serve_host: str) -> list[str]:
    """What endpoints on a Ray cluster expose (server/backends/rayexposure.py has what listens where)."""
    lines = []
    if not is_loopback(serve_host):
        lines.append(f"warning: Ray Serve listens on {serve_host} on every node, in plain HTTP: anyone who can reach "
                     "a node can call every endpoint created without --auth (put a TLS gateway in front)")
    lines.append("warning: in HAProxy mode (RAY_SERVE_ENABLE_HA_PROXY=1) Ray Serve's HAProxy listens on every "
                 "interface of every node for its stats page (port RAY_SERVE_HAPROXY_STATS_PORT, default 8404) and "
                 "its metrics (RAY_SERVE_HAPROXY_METRICS_PORT, default 9101), whatever --ray-serve-host says: "
                 "Ray 2.60 cannot bind them elsewhere, so firewall them")
    return lines
