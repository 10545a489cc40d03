"""`trainml job ...`: create endpoints and manage their jobs.

Every input is checked before the first request (routes, model source, --env), so a usage error exits 2 and
leaves no job behind. Only click and the light param/output modules are imported here: the SDK, asyncio and
rich load inside the commands, so `trainml job create endpoint --help` stays as fast as a bare click CLI.
"""

from __future__ import annotations

import click

from ..hints import shell_quote
from ..limits import MAX_CONCURRENCY, MAX_QUEUE
from .endpoint import capture_options
from .environment import environment_payload
from .jobview import (
    ATTACH_TAIL,
    describe,
    endpoint_key,
    follow_logs,
    model_text,
    resources_text,
    show_endpoint,
    wait_running,
)
from .output import Output, format_option, when
from .params import (
    CREDENTIAL_KINDS,
    ENV,
    FINITE_PRICE,
    GPU_COUNT,
    JOB,
    MODEL,
    ROUTE,
    SECONDS,
    SECRET,
    Limited,
    model_source,
    refused,
    validate_routes,
)
from .scaling import scaling_options, scaling_payload


@click.group()
def job():
    """Create endpoints and manage jobs.

    JOB is a job's id or its unique name.
    """


@job.group()
def create():
    """Create a job."""


@create.command("endpoint")
@click.argument("name")
@click.option("--model-dir", type=click.Path(exists=True, file_okay=False), help="Model code in this local folder.")
@click.option("--git-uri", metavar="URI", help="Model code from this git repository (a URI, or a path to a "
              "repository on this machine).")
@click.option("--git-ref", metavar="REF", help="Branch, tag or commit SHA of --git-uri (default: its HEAD).")
@click.option("--model-id", type=MODEL, help="Model code stored with `trainml model create` (id or name).")
@click.option("--route", "routes", type=ROUTE, multiple=True, help="A route as JSON; repeat for more routes.")
@click.option("--route-file", type=click.Path(exists=True, dir_okay=False), help="A JSON or YAML list of routes.")
@click.option("--env", "env", type=ENV, multiple=True, help="An environment variable for the model; repeatable.")
@click.option("--secret", "secrets", type=SECRET, multiple=True, metavar="NAME",
              help="A secret stored with `trainml secret create NAME`, set as the environment variable NAME; "
                   "repeatable.")
@click.option("--credential", "credentials", multiple=True, metavar="KIND",
              type=click.Choice(CREDENTIAL_KINDS, case_sensitive=False),
              help=f"Your local {'/'.join(CREDENTIAL_KINDS)} credential files, made known to the endpoint by "
                   "their standard variable (e.g. AWS_SHARED_CREDENTIALS_FILE); repeatable.")
@click.option("--pip-packages", "pip_packages", multiple=True, metavar="PKGS",
              help="pip packages for the endpoint's own environment, comma-separated ('scikit-learn,numpy==2.1'); "
                   "repeatable. A requirements.txt at the model folder's root is used too.")
@click.option("--requirements", metavar="PATH", help="A requirements file inside the model folder "
              "(default: requirements.txt, when there is one).")
@click.option("--python", "python", metavar="VERSION|PATH", help="The interpreter the endpoint runs on, e.g. 3.12 "
              "(found on the control plane's machine; default: the control plane's own).")
@click.option("--environment", "environment_type", metavar="NAME", help="trainML's environment name, any case "
              "(e.g. PYTORCH_PY39_113; `trainml environment list`): runs on the Python it names when the machine has "
              "it, else the default, and adds its framework (torch==1.13.*) to the endpoint's packages; "
              "--pip-packages pins of the same package win.")
@click.option("--apt-packages", metavar="PKGS", callback=refused("apt"), expose_value=False,
              help="Refused: system packages are not installed.")
@click.option("--conda-packages", metavar="PKGS", callback=refused("conda"), expose_value=False,
              help="Refused: environments are built with pip packages.")
@click.option("--custom-image", metavar="IMAGE", callback=refused("custom_image"), expose_value=False,
              help="Refused: endpoints run as processes, not containers.")
@click.option("--checkpoint", metavar="ID", multiple=True, callback=refused("checkpoint"), expose_value=False,
              help="Refused: no checkpoint store; put the files in the model code.")
@click.option("--public-checkpoint", metavar="ID", multiple=True, callback=refused("checkpoint"),
              expose_value=False, help="Refused: no checkpoint store; put the files in the model code.")
@click.option("-gt", "--gpu-type", "gpu_types", multiple=True, metavar="TYPE",
              help="Acceptable GPU type (rtx3090, a100, ... or cpu; see `trainml gpu list`); repeatable.")
@click.option("-gc", "--gpu-count", metavar="N", type=GPU_COUNT, help="GPUs per worker (per replica on Ray, where "
              "a fraction such as 0.5 shares a GPU).")
@click.option("-cc", "--cpu-count", metavar="N", type=click.IntRange(1), help="CPUs per replica. Local backend without "
              "--replicas: the number of worker processes (as before replicas existed), at most the server's CPUs.")
@click.option("-ds", "--disk-size", type=click.IntRange(1), metavar="GB", help="Disk space in GB.")
@click.option("-mp", "--max-price", type=FINITE_PRICE, metavar="CREDITS", help="Highest price per GPU-hour to accept.")
@click.option("--max-concurrency", metavar="N", type=Limited(1, MAX_CONCURRENCY, "threads per worker"),
              help="Calls (or batches) served at once per worker, then queued; at most 1024.")
@click.option("--max-queue", metavar="N", type=Limited(0, MAX_QUEUE, "requests waiting per worker"),
              help="Requests queued per worker before answering 503; at most 1,000,000.")
@click.option("--call-timeout", metavar="SECONDS", type=SECONDS,
              help="How long one call may run before the caller gets 504 (default 60).")
@click.option("--timeout", type=SECONDS, default=300, show_default=True,
              metavar="SECONDS", help="How long to wait for the endpoint to be running.")
@click.option("--auth/--no-auth", default=False, show_default=True,
              help="Give the endpoint a key: calls without 'Authorization: Bearer KEY' get 401 (/ping stays open). "
                   "`trainml job connect` shows the key; `trainml job rotate-key` replaces it.")
@click.option("--connect/--no-connect", default=True, show_default=True,
              help="Wait until running, then print the URL and example calls.")
@click.option("--attach/--no-attach", default=False, show_default=True, help="Then follow the job's logs.")
@click.option("--new", "new", is_flag=True, help="Make another job of this name even when a running one has it "
              "(without it, that job gets the code as a new revision, if it differs: trainml job update).")
@scaling_options
@capture_options
@format_option
@click.pass_obj
def create_endpoint(obj, name, model_dir, git_uri, git_ref, model_id, routes, route_file, env, secrets, credentials,
                    pip_packages,
                    requirements, python, environment_type, gpu_types, gpu_count, cpu_count, disk_size, max_price,
                    max_concurrency, max_queue, call_timeout, timeout, auth, connect, attach, fmt, new=False,
                    capture=None, **scaling):
    """Create an endpoint job NAME serving model code over HTTP.

    Give the code with exactly one of --model-dir, --git-uri or --model-id, and at least one route (--route
    or --route-file). A route maps a verb and path to a function in a file of the model code:

    \b
      trainml job create endpoint sentiment --model-dir examples/sentiment \\
        --route '{"verb": "POST", "path": "/predict", "file": "predict",
                  "function": "predict", "body": [{"name": "text", "type": "str"}]}'

    The endpoint runs in an environment of its own, built once with uv and shared by every job that asks for
    the same packages, when it names pip packages (--pip-packages), has a requirements.txt, or picks another
    --python; otherwise on the control plane's interpreter.

    A route with "batch": {"max_size": 32, "max_wait_ms": 5} is batched: its function gets up to 32 requests
    in one call, one list per param (text=[t1, t2, ...]), and returns one result per request, in order.

    Prints a curl command per route, then `Endpoint is running at:  URL` (trainML's last line, two spaces).

    When a running job already has the name NAME, the code and options go to it as a new revision on the same
    URL (as `trainml job update` does), or nothing happens when they are what it serves; --new makes a second
    job of the same name instead.

    Every option of trainML's CLI 1.0.2 is taken with its name and short form (-gt, -gc, -cc, -ds, -mp);
    --apt-packages, --conda-packages, --custom-image, --checkpoint and --public-checkpoint exit 2 saying why.
    """
    # Everything is checked here, before the first request: a usage error must leave no job behind.
    source = model_source(model_dir, git_uri, git_ref, model_id)
    parsed = validate_routes(routes, route_file)
    if model_dir:
        from ..routespec import check_route_files

        check_route_files(parsed, model_dir)
    endpoint = {"routes": [route.to_dict() for route in parsed]}
    if max_concurrency is not None:
        endpoint["max_concurrency"] = max_concurrency
    if max_queue is not None:
        endpoint["max_queue"] = max_queue
    if call_timeout is not None:
        endpoint["timeout"] = call_timeout
    if auth:
        endpoint["auth"] = True
    endpoint.update(capture or {})
    endpoint.update(scaling_payload(max_concurrency, **scaling))
    resources = {
        key: value
        for key, value in (("gpu_types", list(gpu_types)), ("gpu_count", gpu_count), ("cpu_count", cpu_count),
                           ("disk_size", disk_size), ("max_price", max_price))
        if value not in (None, [])
    }
    environment = environment_payload(env, pip_packages, requirements, python, environment_type, model_dir)
    if secrets:
        environment = {**(environment or {}), "secrets": list(dict.fromkeys(secrets))}
    if credentials:
        from ..credentials import credential_env

        found = credential_env(credentials)  # a UsageError (exit 2) naming what is missing, before anything is sent
        environment = {**(environment or {}), "env": list((environment or {}).get("env") or []) + found}
    out = Output(obj, fmt)
    made = []

    from ..errors import JobFailed

    async def work(client):
        if not new:
            from .revision import deploy_to_running

            if await deploy_to_running(client, out, name, model=source, endpoint=endpoint, environment=environment,
                                       resources=resources or None):
                return
        # The server checks what only it can (its GPUs, interpreters, the git source) before it creates anything:
        # until it answers, nothing is printed that a refusal would contradict.
        with out.progress(f"Creating job {name}", spinner_only=True):
            created = await client.jobs.create(name, "endpoint", model=source, endpoint=endpoint,
                                               resources=resources or None, environment=environment)
        made.append(created)
        out.debug(f"Created job {created.name} ({created.id})")
        if (created.dict.get("environment") or {}).get("note"):
            out.note(created.dict["environment"]["note"])
        if connect:
            try:
                await wait_running(created, out, timeout)
            except JobFailed:
                if out.json_mode:  # a script still gets the failed job's record, and exit 1
                    out.json(created.dict)
                raise
        key = await endpoint_key(created)
        if out.json_mode:
            out.json({**created.dict, "key": key} if key else created.dict)
        elif connect:
            await show_endpoint(created, out, key)
        else:
            out.line(f"Created job {created.name} ({created.id}); status: {created.status}")
            out.note(f"`trainml job connect {shell_quote(created.name)}` prints its URL once it is running.")
        if attach:
            await follow_logs(created, out, tail=None if not connect else ATTACH_TAIL)

    try:
        obj.run(work)
    except KeyboardInterrupt:
        if made:  # Ctrl-C stops this command, not the job: say where it went
            out.note(f"\nJob {name} ({made[0].id}) keeps going; see `trainml job get {made[0].id}`.")
        raise


@job.command("list")
@format_option
@click.pass_obj
def list_jobs(obj, fmt):
    """List jobs."""
    out = Output(obj, fmt)
    jobs = obj.run(lambda client: client.jobs.list())
    if out.json_mode:
        out.json([j.dict for j in jobs])
        return
    columns, rows = ["ID", "NAME", "STATUS", "URL"], [[j.id, j.name, j.status, j.url or ""] for j in jobs]
    if out.verbose:  # -v: what each job holds; -vv: where its code came from and what it costs
        columns += ["RESOURCES", "CREATED"]
        for row, j in zip(rows, jobs):
            row += [resources_text(j.dict.get("resources") or {}), when(j.dict.get("created"))]
    if out.verbose > 1:
        columns += ["MODEL", "RATE"]
        for row, j in zip(rows, jobs):
            row += [model_text(j.dict.get("model") or {}), f"{j.dict.get('hourly_rate', 0):g}/h"]
    out.table(
        columns,
        rows,
        status_column="STATUS",
        empty="No jobs yet; create one with `trainml job create endpoint`.",
    )


@job.command("get")
@click.argument("job_ref", metavar="JOB", type=JOB)
@format_option
@click.pass_obj
def get_job(obj, job_ref, fmt):
    """Show a job: status, URL, routes, model source, resources, run time, credits, restarts."""
    out = Output(obj, fmt)
    found = obj.run(lambda client: client.jobs.get(job_ref))
    if out.json_mode:
        out.json(found.dict)
    else:
        out.fields(describe(found, out.verbose))


@job.command("stop")
@click.argument("job_ref", metavar="JOB", type=JOB)
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait until it has stopped.")
@format_option
@click.pass_obj
def stop_job(obj, job_ref, wait, fmt):
    """Stop a job; its record and logs stay until `job remove`."""
    out = Output(obj, fmt)

    async def work(client):
        found = await client.jobs.get(job_ref)
        with out.progress(f"Stopping job {found.name}"):
            await found.stop(wait=wait)
        if out.json_mode:
            await found.refresh()
            out.json(found.dict)
        else:
            out.line(f"Job {found.name} stopped." if wait else f"Job {found.name} is stopping.")

    obj.run(work)


@job.command("start")
@click.argument("job_ref", metavar="JOB", type=JOB)
@click.option("--connect/--no-connect", default=False, show_default=True,
              help="Wait until running, then print the URL and example calls.")
@click.option("--timeout", type=SECONDS, default=300, show_default=True,
              metavar="SECONDS", help="How long --connect waits.")
@format_option
@click.pass_obj
def start_job(obj, job_ref, connect, timeout, fmt):
    """Start a stopped job again."""
    out = Output(obj, fmt)

    async def work(client):
        found = await client.jobs.get(job_ref)
        await found.start()
        if connect:
            await found.refresh()
            await wait_running(found, out, timeout)
        if out.json_mode:
            await found.refresh()
            out.json(found.dict)
        elif connect:
            await show_endpoint(found, out, await endpoint_key(found))
        else:
            out.line(f"Job {found.name} is starting.")

    obj.run(work)


@job.command("remove")
@click.argument("job_ref", metavar="JOB", type=JOB)
@click.option("--force/--no-force", default=False, show_default=True, help="Stop it first if it is running.")
@format_option
@click.pass_obj
def remove_job(obj, job_ref, force, fmt):
    """Remove a job and its logs."""
    out = Output(obj, fmt)

    async def work(client):
        found = await client.jobs.get(job_ref)
        await found.remove(force=force)
        return found

    found = obj.run(work)
    if out.json_mode:
        out.json({"id": found.id, "name": found.name, "removed": True})
        return
    out.line(f"Removed job {found.name}.")


# Commands of their own modules (job.py would be long), under the one `job` group.
from .call import call_job  # noqa: E402
from .connect import connect_job, rotate_key  # noqa: E402
from .joblog import attach_job, logs  # noqa: E402
from .requests import replay_job, requests_job  # noqa: E402
from .revision import list_revisions, rollback_job, update_job  # noqa: E402

job.add_command(call_job)
job.add_command(connect_job)
job.add_command(rotate_key)
job.add_command(logs)
job.add_command(attach_job)
job.add_command(update_job)
job.add_command(list_revisions)
job.add_command(rollback_job)
job.add_command(requests_job)
job.add_command(replay_job)
