"""`trainml job update`, `job revisions` and `job rollback`: new code on a running endpoint's URL without a
failed call, the revisions a job has served, and serving an earlier one again (server/revisions.py).

Registered on the `job` group by cli/job.py; like it, only click and the light modules load here.
"""

from __future__ import annotations

import click

from ..contracts import STRATEGIES
from ..limits import MAX_CONCURRENCY, MAX_QUEUE
from ..states import headline
from .endpoint import capture_options
from .output import Output, format_option, when
from .params import ENV, GPU_COUNT, JOB, ROUTE, SECONDS, Limited, model_source, validate_routes

UPDATE_TIMEOUT = 1800


def strategy_option(command):
    return click.option(
        "--strategy", type=click.Choice(STRATEGIES), default=STRATEGIES[0], show_default=True,
        help="blue-green: the new revision starts beside the serving one, with GPUs of its own (refused when they "
             "are free only once the serving one stops). recreate: the serving revision stops first, then the new "
             "one starts; calls wait meanwhile (the downtime is printed).")(command)


@click.command("update")
@click.argument("job_ref", metavar="JOB", type=JOB)
@click.option("--model-dir", type=click.Path(exists=True, file_okay=False), help="New model code from this folder.")
@click.option("--git-uri", metavar="URI", help="New model code from this git repository.")
@click.option("--git-ref", metavar="REF", help="Branch, tag or commit SHA of --git-uri.")
@click.option("--model-id", metavar="MODEL", help="New model code stored with `trainml model create`.")
@click.option("--route", "routes", type=ROUTE, multiple=True, help="A route as JSON; repeat for more (replaces "
              "every route).")
@click.option("--route-file", type=click.Path(exists=True, dir_okay=False), help="A JSON or YAML list of routes.")
@click.option("--env", "env", type=ENV, multiple=True, help="An environment variable (replaces them all); "
              "repeatable.")
@click.option("--pip-packages", "pip_packages", multiple=True, metavar="PKGS", help="Packages to pip install "
              "(replaces the list).")
@click.option("--requirements", metavar="PATH", help="A requirements file inside the model folder.")
@click.option("--python", "python", metavar="VERSION|PATH", help="The interpreter the endpoint runs on.")
@click.option("--replicas", type=click.IntRange(1), metavar="N", help="Worker processes.")
@click.option("-cc", "--cpu-count", metavar="N", type=click.IntRange(1), help="CPUs (workers, without --replicas).")
@click.option("--max-concurrency", metavar="N", type=Limited(1, MAX_CONCURRENCY, "threads per worker"),
              help="Calls running at once, per worker.")
@click.option("--max-queue", metavar="N", type=Limited(0, MAX_QUEUE, "requests waiting per worker"),
              help="Requests waiting, per worker.")
@click.option("--call-timeout", metavar="SECONDS", type=SECONDS, help="Seconds a call may run (504 after).")
@click.option("-gt", "--gpu-type", "gpu_types", multiple=True, metavar="TYPE",
              help="Acceptable GPU type (rtx3090, a100, ... or cpu); repeatable (replaces the list).")
@click.option("-gc", "--gpu-count", metavar="N", type=GPU_COUNT, help="GPUs the endpoint gets.")
@click.option("--auth/--no-auth", default=None, help="Turn the endpoint key on (a new key, printed once; calls "
              "without it get 401) or off (the key is dropped).")
@strategy_option
@capture_options
@click.option("--timeout", type=SECONDS, default=UPDATE_TIMEOUT, show_default=True,
              help="Seconds to wait for the new revision to serve.")
@format_option
@click.pass_obj
def update_job(obj, job_ref, model_dir, git_uri, git_ref, model_id, routes, route_file, env, pip_packages,
               requirements, python, replicas, cpu_count, max_concurrency, max_queue, call_timeout, gpu_types,
               gpu_count, auth, strategy, timeout, fmt, capture=None):
    """Deploy a new revision of running endpoint JOB on the same URL, without a failed call.

    What is given replaces the serving revision's; the rest is carried over. With no option at all the same
    spec is deployed again (a git branch's head is fetched again). The new revision starts beside the serving
    one on the same socket, takes calls once its code has loaded, and the old one then finishes its calls in
    flight and stops. When this command returns, every new call reaches the new revision.

    GPUs: the new revision gets GPUs of its own beside the serving one's, which are freed once it stops; when
    they are free only then, the update is refused (exit 1) unless --strategy recreate.

    A revision that cannot be fetched, built, loaded or made ready in time is marked failed and the serving
    one goes on: exit 1 with the reason and the last log lines. `trainml job rollback` serves an earlier one.
    """
    from ..environment import check_environment, split_pip_packages

    model = None
    if model_dir or git_uri or model_id:
        model = model_source(model_dir, git_uri, git_ref, model_id)
    elif git_ref:
        raise click.UsageError("--git-ref needs --git-uri")
    endpoint: dict = {}
    if routes or route_file:
        parsed = validate_routes(routes, route_file)
        if model_dir:
            from ..routespec import check_route_files

            check_route_files(parsed, model_dir)
        endpoint["routes"] = [route.to_dict() for route in parsed]
    for key, value in (("replicas", replicas), ("max_concurrency", max_concurrency), ("max_queue", max_queue),
                       ("timeout", call_timeout), ("auth", auth)):
        if value is not None:
            endpoint[key] = value
    endpoint.update(capture or {})
    environment: dict = {}
    if env:
        environment["env"] = [{"key": key, "value": value} for key, value in env]
    if pip_packages:
        environment["packages"] = {"pip": split_pip_packages(pip_packages)}
    for key, value in (("requirements", requirements), ("python", python)):
        if value:
            environment[key] = value
    check_environment(environment)
    resources = {key: value for key, value in (("cpu_count", cpu_count), ("gpu_types", list(gpu_types)),
                                               ("gpu_count", gpu_count)) if value not in (None, [])}
    out = Output(obj, fmt)

    async def work(client):
        found = await client.jobs.get(job_ref)
        had_key = bool((found.dict.get("endpoint") or {}).get("auth"))
        with out.progress(f"Deploying a new revision of {found.name}"):
            revision = await found.update(model=model, endpoint=endpoint or None, environment=environment or None,
                                          resources=resources or None, timeout=timeout, strategy=strategy)
        key = (await found.connection()).get("key") if revision.get("auth") and not had_key else None
        served(out, found, revision, f"Revision {revision['revision']} of {found.name} is serving at: {found.url}",
               key)

    obj.run(work)


def served(out: Output, job, revision: dict, line: str, key: str | None = None) -> None:
    """The revision that serves; the key made for it (shown once, as create shows it); a recreate's downtime."""
    if out.json_mode:
        out.json({**revision, "key": key} if key else revision)
        return
    if key:
        from .jobview import key_line

        out.line(key_line(key))
    if revision.get("downtime") is not None:
        out.line(f"--strategy recreate: no process accepted calls for {revision['downtime']:.2f} s (calls sent "
                 "meanwhile waited, none was refused)")
    out.line(line)


@click.command("revisions")
@click.argument("job_ref", metavar="JOB", type=JOB)
@format_option
@click.pass_obj
def list_revisions(obj, job_ref, fmt):
    """List the revisions of JOB: what it served, oldest first (1 is what create made)."""
    out = Output(obj, fmt)

    async def work(client):
        return await (await client.jobs.get(job_ref)).revisions()

    rows = obj.run(work)
    if out.json_mode:
        out.json(rows)
        return
    out.table(["REVISION", "STATUS", "CREATED", "SOURCE", "GPUS", "AUTH", "REASON"],
              [[r["revision"], r["status"], when(r.get("created")), r.get("source") or "", r.get("gpus") or "",
                "key" if r.get("auth") else "-", headline(r.get("reason"))] for r in rows],
              status_column="STATUS", empty="No revisions.")


@click.command("rollback")
@click.argument("job_ref", metavar="JOB", type=JOB)
@click.option("--to", "to", type=click.IntRange(1), metavar="N", help="The revision to serve again (default: the "
              "newest retired one before the serving one).")
@strategy_option
@click.option("--timeout", type=SECONDS, default=UPDATE_TIMEOUT, show_default=True,
              help="Seconds to wait for it to serve.")
@format_option
@click.pass_obj
def rollback_job(obj, job_ref, to, strategy, timeout, fmt):
    """Serve an earlier revision of running endpoint JOB again, with its own code, environment, GPUs and auth,
    switching as `job update` does (no failed call). A revision with auth, served again by a job that has no
    key, gets a new key (printed once)."""
    out = Output(obj, fmt)

    async def work(client):
        found = await client.jobs.get(job_ref)
        had_key = bool((found.dict.get("endpoint") or {}).get("auth"))
        with out.progress(f"Rolling {found.name} back"):
            revision = await found.rollback(to=to, timeout=timeout, strategy=strategy)
        key = (await found.connection()).get("key") if revision.get("auth") and not had_key else None
        served(out, found, revision, f"Revision {revision['revision']} of {found.name} is serving again at: "
               f"{found.url}", key)

    obj.run(work)


async def deploy_to_running(client, out: Output, name: str, **spec) -> bool:
    """`job create endpoint NAME` again: when one running job has the name, deploy the spec to it as a new
    revision if it differs, print where it serves, and say so (True); False when there is no such job."""
    import asyncio
    from pathlib import Path

    from ..errors import Ambiguous
    from ..packing import files_to_pack
    from .jobview import endpoint_key, show_endpoint

    model = spec["model"]
    if model.get("source_type") == "local":  # a folder create would refuse (a link out of it) exits 2 unsent
        await asyncio.to_thread(files_to_pack, Path(model["source_uri"]))
    running = [j for j in await client.jobs.list() if j.name == name and j.status == "running"]
    if not running:
        return False
    if len(running) > 1:
        raise Ambiguous(f"{len(running)} running jobs are named {name!r}; update one by id with `trainml job update "
                        "ID`, or give --new for another job of that name")
    job = running[0]
    with out.progress(f"Deploying to running job {name} ({job.id})"):
        revision = await job.update(**spec, if_changed=True)
    await job.refresh()
    if out.json_mode:
        out.json({**job.dict, "revision": revision})
        return True
    if revision.get("unchanged"):
        out.line(f"Job {name} ({job.id}) already serves this code (revision {revision['revision']}); nothing changed")
    else:
        out.line(f"Revision {revision['revision']} of job {name} ({job.id}) is serving")
    await show_endpoint(job, out, await endpoint_key(job))
    return True
