"""`--replicas`, `--min-replicas`, `--max-replicas`, the autoscaling settings and `--ray-actor-options` of
`trainml job create endpoint`: how many copies serve, and where Ray places them.

Kept apart from the other options so the meaning stays in one place: on Ray, Serve replicas (autoscaled between
min and max as the settings say, `--cpu-count` and `--gpu-count` per replica); on the local backend, worker
processes sharing the endpoint's port, autoscaled by the endpoint's own leader process (down to zero with
`--min-replicas 0`; Ray's replica options need Ray). The settings' names,
defaults and checks are trainml_cli/replicaspec.py's and trainml_cli/actoroptions.py's, shared with the API.
"""

from __future__ import annotations

import click

from ..replicaspec import AUTOSCALING, LOCAL, check_scaling
from .params import ActorOptionsParam, FiniteFloat

_options = [
    click.option("--replicas", metavar="N", type=click.IntRange(1),
                 help="Copies of the endpoint serving it: Ray Serve replicas, or worker processes locally."),
    click.option("--min-replicas", metavar="N", type=click.IntRange(0),
                 help="Autoscaling: at least this many replicas, scaled with the calls in flight (0: scaled to zero "
                      "when idle, here and on Ray; calls are held while one starts)."),
    click.option("--max-replicas", metavar="N", type=click.IntRange(1),
                 help="Autoscaling: at most this many replicas (locally: worker processes, at most one per CPU)."),
    *[click.option(setting.option, setting.key, metavar="N" if setting.default is None else "SECONDS",
                   type=FiniteFloat(0.0, open_low=setting.default is None or setting.key == "cold_start_timeout"),
                   help=setting.help)
      for setting in AUTOSCALING + LOCAL],
    click.option("--ray-actor-options", "ray_actor_options", type=ActorOptionsParam(),
                 help='Ray backend: each replica\'s placement, as JSON: {"memory": BYTES, "resources": {"NAME": '
                      'AMOUNT}, "accelerator_type": "A100", "label_selector": {...}} (CPUs and GPUs: --cpu-count, '
                      '--gpu-count).'),
]


def scaling_options(function):
    for option in reversed(_options):
        function = option(function)
    return function


def _option(key: str) -> str:
    return "--" + key.replace("_", "-")


def scaling_payload(max_concurrency=None, ray_actor_options=None, **given) -> dict:
    """The `endpoint` fields for these options; a usage error (exit 2) naming the option for a contradiction."""
    fields = {key: value for key, value in given.items() if value is not None}
    check_scaling({**fields, "max_concurrency": max_concurrency}, name=_option)  # UsageError: exit 2
    if ray_actor_options:
        fields["ray_actor_options"] = ray_actor_options
    return fields
