"""`trainml job logs` and `trainml job attach`: a job's log, its history and what comes next (registered under
the `job` group by job.py)."""

from __future__ import annotations

import click

from .jobview import ATTACH_TAIL, follow_logs
from .output import Output, format_option
from .params import JOB


@click.command("logs")
@click.argument("job_ref", metavar="JOB", type=JOB)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines as they come.")
@click.option("--tail", type=click.IntRange(0), metavar="N", help="Only the last N lines of history.")
@click.option("-t", "--timestamps", is_flag=True, help="Prefix each line with its time, stream and revision.")
@format_option(short=False)
@click.pass_obj
def logs(obj, job_ref, follow, tail, timestamps, fmt):
    """Print a job's logs (--format json: one JSON object per line)."""
    out = Output(obj, fmt)

    async def work(client):
        await follow_logs(await client.jobs.get(job_ref), out, tail=tail, follow=follow, timestamps=timestamps)

    obj.run(work)


@click.command("attach")
@click.argument("job_ref", metavar="JOB", type=JOB)
@click.pass_obj
def attach_job(obj, job_ref):
    """Follow a job's logs until it stops; exits 1 if it failed."""
    out = Output(obj)

    async def work(client):
        await follow_logs(await client.jobs.get(job_ref), out, tail=ATTACH_TAIL)

    obj.run(work)
