"""`trainml endpoint serve`: run the endpoint runtime in the foreground, without the control plane.

The same server the control plane launches for a job, for trying model code locally or running it under a
process manager of your own.
"""

from __future__ import annotations

import click

from ..runtime.config import (
    DEFAULT_MAX_BODY_SIZE,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_QUEUE,
    DEFAULT_TIMEOUT,
    RuntimeConfig,
)
from ..limits import MAX_CONCURRENCY, MAX_QUEUE, cpu_count
from .params import ROUTE, Limited, validate_routes


@click.group()
def endpoint():
    """Serve model code in the foreground (no control plane)."""


@endpoint.command()
@click.option("--model-dir", required=True, type=click.Path(exists=True, file_okay=False), help="Folder with the model code.")
@click.option("--route", "routes", multiple=True, type=ROUTE, help="A route as JSON (repeatable).")
@click.option("--route-file", type=click.Path(dir_okay=False), help="A JSON or YAML list of routes.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="Port (0: any free one).")
@click.option("--workers", default=1, show_default=True, type=Limited(1, cpu_count(), "this machine's CPUs"),
              help="Processes, for CPU-bound code; at most one per CPU.")
@click.option("--max-concurrency", default=DEFAULT_MAX_CONCURRENCY, show_default=True,
              type=Limited(1, MAX_CONCURRENCY, "threads per worker"),
              help="Calls (or batches) running at once, per worker; at most 1024.")
@click.option("--max-queue", default=DEFAULT_MAX_QUEUE, show_default=True,
              type=Limited(0, MAX_QUEUE, "requests waiting per worker"),
              help="Requests waiting, per worker; beyond it: 503 with Retry-After. At most 1,000,000.")
@click.option("--timeout", default=DEFAULT_TIMEOUT, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Seconds a call may run before the client gets 504 (time in the queue not counted).")
@click.option("--max-body-size", default=DEFAULT_MAX_BODY_SIZE, show_default=True, type=click.IntRange(1),
              help="Largest request body in bytes; larger gets 413.")
@click.option("--access-log/--no-access-log", default=True, show_default=True, help="One line per request.")
@click.option("--key-file", type=click.Path(exists=True, dir_okay=False),
              help="Callers must send 'Authorization: Bearer KEY' with the key in this file (read again when it "
                   "changes); /ping and /metrics stay open.")
@click.option("--tls-certfile", type=click.Path(exists=True, dir_okay=False), help="Serve HTTPS with this certificate (PEM).")
@click.option("--tls-keyfile", type=click.Path(exists=True, dir_okay=False), help="The certificate's private key (PEM).")
@click.option("--max-connections", default=DEFAULT_MAX_CONNECTIONS, show_default=True, type=click.IntRange(1),
              help="Open connections per worker; past it requests get 503.")
def serve(model_dir, routes, route_file, host, port, workers, max_concurrency, max_queue, timeout, max_body_size,
          access_log, key_file, tls_certfile, tls_keyfile, max_connections):
    """Serve MODEL_DIR's functions as REST routes until interrupted.

    \b
    trainml endpoint serve --model-dir examples/sentiment --port 8000 \\
      --route '{"verb":"POST","path":"/predict","file":"predict","function":"predict",
                "body":[{"name":"text","type":"str"}]}'

    A route with "batch": {"max_size": 32, "max_wait_ms": 5} is batched: its function gets up to 32 requests
    in one call, one list per param, and returns one result per request, in order. GET /metrics answers
    Prometheus' text format, summed over all workers.
    """
    from ..runtime.server import serve as run

    config = RuntimeConfig(
        model_dir=model_dir, routes=validate_routes(routes, route_file), host=host, port=port, workers=workers,
        max_concurrency=max_concurrency, max_queue=max_queue, timeout=timeout, max_body_size=max_body_size,
        access_log=access_log, key_file=key_file, tls_certfile=tls_certfile, tls_keyfile=tls_keyfile,
        max_connections=max_connections,
    )
    code = run(config)
    return 1 if code else 0
