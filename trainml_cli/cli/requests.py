"""`trainml job requests` and `trainml job replay`: the calls an endpoint kept with --capture, and one sent
again (registered under the `job` group by job.py)."""

from __future__ import annotations

import json

import click

from .output import Output, format_option
from .params import JOB


class StatusFilter(click.ParamType):
    name = "STATUS"

    def convert(self, value, param, ctx):
        from ..capturequery import check_status
        from ..errors import UsageError

        try:
            return check_status(str(value).lower())
        except UsageError as exc:
            self.fail(str(exc).replace("status: ", ""), param, ctx)


class Age(click.ParamType):
    name = "AGE"

    def convert(self, value, param, ctx):
        from ..capturequery import since_time
        from ..errors import UsageError

        try:
            since_time(value)
        except UsageError as exc:
            self.fail(str(exc).replace("since: ", ""), param, ctx)
        return value


def _line(entry: dict) -> str:
    latency = f"{entry['latency_ms']:.1f}ms" if entry.get("latency_ms") is not None else "-"
    text = f"{entry.get('time', '')}  {entry.get('route', '')}  {entry.get('status', '')}  {latency}  {entry['id']}"
    if entry.get("error"):
        text += f"  {entry['error'].get('kind')}: {entry['error'].get('message')}"
    return text


@click.command("requests")
@click.argument("job_ref", metavar="JOB", type=JOB)
@click.option("--tail", type=click.IntRange(1, 1000), default=100, show_default=True, metavar="N",
              help="Only the last N that match.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing calls as they are kept.")
@click.option("--status", type=StatusFilter(), help="Only this status (200) or class (2xx, 4xx, 5xx).")
@click.option("--route", metavar="PATH", help="Only this route: /predict, or 'POST /predict'.")
@click.option("--since", type=Age(), help="Only calls since this long ago (10m, 2h, 1d) or an ISO time.")
@format_option(short=False)
@click.pass_obj
def requests_job(obj, job_ref, tail, follow, status, route, since, fmt):
    """Print the calls endpoint JOB kept (created with --capture RATE), oldest first.

    Each has its id (the answer's X-Request-Id), time, route, status, latency, request and answer; never a
    header. --format json prints a list of entries (with -f: one entry per line). `trainml job replay JOB ID`
    sends one again.
    """
    out = Output(obj, fmt)

    async def work(client):
        job = await client.jobs.get(job_ref)
        if follow:
            async for entry in job.follow_requests(status=status, route=route, since=since):
                out.json_line(entry) if out.json_mode else out.line(_line(entry))
            return
        page = await job.requests_page(tail=tail, status=status, route=route, since=since)
        if out.json_mode:
            out.json(page["requests"])
            return
        for entry in page["requests"]:
            out.line(_line(entry))
        if not page["requests"]:
            capture = (job.dict.get("endpoint") or {}).get("capture")
            out.note("no captured calls" + ("" if capture else f" (job {job.name} has no --capture rate)"))
        if page["dropped"]:
            out.note(f"{page['dropped']} sampled call(s) were not kept: the endpoint's writer was behind")

    obj.run(work)


@click.command("replay")
@click.argument("job_ref", metavar="JOB", type=JOB)
@click.argument("request_id", metavar="REQUEST_ID")
@format_option
@click.pass_obj
def replay_job(obj, job_ref, request_id, fmt):
    """Send captured call REQUEST_ID to endpoint JOB again; show the old and new answers and whether they differ.

    A multipart call (its files were not kept) or one whose body was cut by --capture-max-bytes cannot be sent
    again (exit 1).
    """
    out = Output(obj, fmt)

    async def work(client):
        job = await client.jobs.get(job_ref)
        replayed = await job.replay(request_id)
        if out.json_mode:
            out.json(replayed)
            return
        out.line(f"Call {replayed['id']} ({replayed['route']}), sent again as {replayed['new']['id']}:")
        for name in ("old", "new"):
            answer = replayed[name]
            out.line(f"{name}: {answer['status']}  {json.dumps(answer['response'], ensure_ascii=False)}")
        out.line("The answers differ." if replayed["differ"] else "The answers are the same.")

    obj.run(work)
