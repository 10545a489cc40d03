"""`trainml gpu list`: the GPU types a job may ask for, their prices, and what the backend has free (this
machine's GPUs, or on the Ray backend the cluster's)."""

from __future__ import annotations

import click

from .output import Output, format_option


@click.group()
def gpu():
    """GPU types, their prices, and the GPUs jobs run on."""


@gpu.command("list")
@format_option
@click.pass_obj
def list_gpus(obj, fmt):
    """List GPU types (for --gpu-type) with their price per hour, how many there are and how many are free:
    this machine's, or on the Ray backend the cluster's (NAMES: Ray's accelerator types).

    A job asking for more GPUs of a type than there are is refused when created; one asking for GPUs that
    exist but are busy waits (`waiting for resources`, or on Ray until the deploy deadline) until they are free.
    """
    out = Output(obj, fmt)
    rows = obj.run(lambda client: client.gpus.list())
    if out.json_mode:
        out.json(rows)
        return
    out.table(["TYPE", "PRICE/HOUR", "COUNT", "FREE", "NAMES"],
              [(r["type"], f"{r['price']:.2f}", r["count"], r["free"], ", ".join(r.get("names") or [])) for r in rows])
    total = sum(r["count"] for r in rows)
    where = next((r["where"] for r in rows if r.get("where")), "this machine")
    out.note(f"{where[0].upper()}{where[1:]} has {total:g} GPU(s) for jobs; a CPU-only "
             "job (--gpu-type cpu) needs none.")
