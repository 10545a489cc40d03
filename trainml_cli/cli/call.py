"""`trainml job call`: call a running endpoint's route and print its answer (or its stream, item by item)."""

from __future__ import annotations

import click

from .output import Output
from .params import DATA, JOB


@click.command("call")
@click.argument("job_ref", metavar="JOB", type=JOB)
@click.argument("route")
@click.option("-d", "--data", type=DATA, help="The body as JSON, @FILE or - for stdin (default: {}).")
@click.option("--stream", is_flag=True,
              help="For a streaming route (its function yields): print each item as one line of JSON as it arrives.")
@click.pass_obj
def call_job(obj, job_ref, route, data, stream):
    """Call ROUTE (a path such as /predict, or 'POST /predict') of a running endpoint; prints the JSON answer.

    An endpoint that is busy or not ready yet (503) is retried with backoff.
    """
    out = Output(obj)
    if stream:
        async def each(client):
            found = await client.jobs.get(job_ref)
            async for item in found.stream(route, data if data is not None else {}):
                out.json_line(item)

        obj.run(each)
        return

    async def work(client):
        found = await client.jobs.get(job_ref)
        return await found.call(route, data if data is not None else {})

    answer = obj.run(work)
    if isinstance(answer, bytes):  # the route answered something other than JSON: pass it through as text
        out.line(answer.decode("utf-8", errors="replace").rstrip("\n"))
    elif out.terminal:
        out.json(answer)
    else:
        out.json_line(answer)
