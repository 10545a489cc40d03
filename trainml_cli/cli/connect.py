"""`trainml job connect` and `trainml job rotate-key`: how to reach a running endpoint (its URL, a curl command
per route, its key), registered under the `job` group by job.py."""

from __future__ import annotations

import click

from .jobview import endpoint_key, follow_logs, show_endpoint, wait_running
from .output import Output, format_option
from .params import JOB, SECONDS


@click.command("connect")
@click.argument("job_ref", metavar="JOB", type=JOB)
@click.option("--timeout", type=SECONDS, default=300, show_default=True,
              metavar="SECONDS", help="How long to wait for a starting job.")
@click.option("--attach/--no-attach", default=False, show_default=True,
              help="Then follow its log until it stops (trainML's flag; its default attaches).")
@format_option
@click.pass_obj
def connect_job(obj, job_ref, timeout, attach, fmt):
    """Wait until an endpoint is running, then print a curl command per route and its URL."""
    out = Output(obj, fmt)

    async def work(client):
        found = await client.jobs.get(job_ref)
        await wait_running(found, out, timeout)
        key = await endpoint_key(found)
        if out.json_mode:
            out.json({**found.dict, "key": key} if key else found.dict)
        else:
            await show_endpoint(found, out, key)
        if attach:
            await follow_logs(found, out, tail=0)

    obj.run(work)


@click.command("rotate-key")
@click.argument("job_ref", metavar="JOB", type=JOB)
@format_option
@click.pass_obj
def rotate_key(obj, job_ref, fmt):
    """Replace an endpoint's key (a job created with --auth); returns once the endpoint takes the new key and
    refuses the old one (on Ray too: the replicas are reconfigured in place, not replaced)."""
    out = Output(obj, fmt)

    async def work(client):
        found = await client.jobs.get(job_ref)
        connection = await found.rotate_key()
        if out.json_mode:
            out.json(connection)
            return
        out.line(f"New key for job {found.name}: {connection['key']}")
        if found.url:
            await show_endpoint(found, out, connection["key"])

    obj.run(work)
