"""`trainml gpu list`: the GPU types a job may ask for, their prices, and what this machine has free."""

from __future__ import annotations

import click

from .output import Output, format_option


@click.group()
def gpu():
    """GPU types, their prices, and this machine's GPUs."""


@gpu.command("list")
@format_option
@click.pass_obj
def list_gpus(obj, fmt):
    """List GPU types (for --gpu-type) with their price per hour, how many this machine has and how many are free.

    A job asking for more GPUs of a type than the machine has is refused when created; one asking for GPUs
    that exist but are busy waits (`waiting for resources`) until they are free.
    """
    out = Output(obj, fmt)
    rows = obj.run(lambda client: client.gpus.list())
    if out.json_mode:
        out.json(rows)
        return
    out.table(["TYPE", "PRICE/HOUR", "COUNT", "FREE", "NAMES"],
              [(r["type"], f"{r['price']:.2f}", r["count"], r["free"], ", ".join(r.get("names") or [])) for r in rows])
    total = sum(r["count"] for r in rows)
    out.note(f"This machine has {total} GPU(s) for jobs; a CPU-only job (--gpu-type cpu) needs none.")
