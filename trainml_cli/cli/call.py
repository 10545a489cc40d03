"""`trainml job call`: call a running endpoint's route and print its answer (or its stream, item by item)."""

from __future__ import annotations

import click

from .output import Output
from .params import DATA, JOB


class FileArg(click.ParamType):
    """NAME=@PATH (the @ as curl writes it; NAME=PATH works too): a file for the route's file param NAME."""

    name = "NAME=@PATH"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        name, equals, path = value.partition("=")
        path = path[1:] if path.startswith("@") else path
        if not equals or not name.isidentifier() or not path:
            self.fail(f"{value!r} is not NAME=@PATH (e.g. image=@cat.jpg)", param, ctx)
        found = click.Path(exists=True, dir_okay=False, readable=True).convert(path, param, ctx)
        return name, found


@click.command("call")
@click.argument("job_ref", metavar="JOB", type=JOB)
@click.argument("route")
@click.option("-d", "--data", type=DATA, help="The body as JSON, @FILE or - for stdin (default: {}).")
@click.option("-f", "--file", "files", type=FileArg(), multiple=True,
              help="A file for a file param, as NAME=@PATH (repeatable); the call is then a multipart upload.")
@click.option("--stream", is_flag=True,
              help="For a streaming route (its function yields): print each item as one line of JSON as it arrives.")
@click.pass_obj
def call_job(obj, job_ref, route, data, stream, files):
    """Call ROUTE (a path such as /predict, or 'POST /predict') of a running endpoint; prints the JSON answer.

    An endpoint that is busy or not ready yet (503) is retried with backoff.
    """
    out = Output(obj)
    files = dict(files) or None
    if files is not None and data is not None and not isinstance(data, dict):
        raise click.UsageError("--data must be a JSON object when files are sent (its keys become form fields)")
    if stream:
        async def each(client):
            found = await client.jobs.get(job_ref)
            async for item in found.stream(route, data if data is not None else {}, files=files):
                out.json_line(item)

        obj.run(each)
        return

    async def work(client):
        found = await client.jobs.get(job_ref)
        return await found.call(route, data if data is not None else {}, files=files)

    answer = obj.run(work)
    if isinstance(answer, bytes):  # the route answered something other than JSON: pass it through as text
        out.line(answer.decode("utf-8", errors="replace").rstrip("\n"))
    elif out.terminal:
        out.json(answer)
    else:
        out.json_line(answer)
