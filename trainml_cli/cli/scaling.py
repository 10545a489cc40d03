"""`--replicas`, `--min-replicas`, `--max-replicas` of `trainml job create endpoint`: how many copies serve.

Kept apart from the other options so the meaning stays in one place: on Ray, Serve replicas (autoscaled between
min and max, `--cpu-count` and `--gpu-count` per replica); on the local backend, worker processes sharing the
endpoint's port (autoscaling needs Ray).
"""

from __future__ import annotations

import click

_options = [
    click.option("--replicas", metavar="N", type=click.IntRange(1),
                 help="Copies of the endpoint serving it: Ray Serve replicas, or worker processes locally."),
    click.option("--min-replicas", metavar="N", type=click.IntRange(1),
                 help="Autoscaling (Ray backend): at least this many replicas, scaled with the calls in flight."),
    click.option("--max-replicas", metavar="N", type=click.IntRange(1),
                 help="Autoscaling (Ray backend): at most this many replicas."),
]


def scaling_options(function):
    for option in reversed(_options):
        function = option(function)
    return function


def scaling_payload(replicas=None, min_replicas=None, max_replicas=None) -> dict:
    """The `endpoint` fields for these options; a usage error (exit 2) for a contradiction."""
    if replicas is not None and (min_replicas is not None or max_replicas is not None):
        raise click.UsageError("give --replicas (a fixed number) or --min-replicas/--max-replicas (autoscaling), "
                               "not both")
    if min_replicas is not None and max_replicas is not None and min_replicas > max_replicas:
        raise click.UsageError(f"--min-replicas {min_replicas} is more than --max-replicas {max_replicas}")
    fields = {"replicas": replicas, "min_replicas": min_replicas, "max_replicas": max_replicas}
    return {key: value for key, value in fields.items() if value is not None}
