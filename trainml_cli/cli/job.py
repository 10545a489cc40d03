"""`trainml job ...`: create endpoints and manage their jobs.

Every input is checked before the first request (routes, model source, --env), so a usage error exits 2 and
leaves no job behind. Only click and the light param/output modules are imported here: the SDK, asyncio and
rich load inside the commands, so `trainml job create endpoint --help` stays as fast as a bare click CLI.
"""

from __future__ import annotations

import click

from .output import Output, duration, format_option, printable, when
from ..limits import MAX_CONCURRENCY, MAX_QUEUE
from .params import DATA, ENV, JOB, MODEL, ROUTE, Limited, model_source, refused, validate_routes

ACTIVE = ("new", "waiting for data/model download", "waiting for resources", "starting")
POLL_INTERVAL = 0.2  # seconds between status checks while a spinner shows the live status
ATTACH_TAIL = 20  # log lines of history shown before `job attach` follows new ones


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
@click.option("--git-uri", metavar="URI", help="Model code from this git repository.")
@click.option("--git-ref", metavar="REF", help="Branch, tag or commit of --git-uri (default: its HEAD).")
@click.option("--model-id", type=MODEL, help="Model code stored with `trainml model create` (id or name).")
@click.option("--route", "routes", type=ROUTE, multiple=True, help="A route as JSON; repeat for more routes.")
@click.option("--route-file", type=click.Path(exists=True, dir_okay=False), help="A JSON or YAML list of routes.")
@click.option("--env", "env", type=ENV, multiple=True, help="An environment variable for the model; repeatable.")
@click.option("--pip-packages", "pip_packages", multiple=True, metavar="PKGS",
              help="pip packages for the endpoint's own environment, comma-separated ('scikit-learn,numpy==2.1'); "
                   "repeatable. A requirements.txt at the model folder's root is used too.")
@click.option("--requirements", metavar="PATH", help="A requirements file inside the model folder "
              "(default: requirements.txt, when there is one).")
@click.option("--python", "python", metavar="VERSION|PATH", help="The interpreter the endpoint runs on, e.g. 3.12 "
              "(found on the control plane's machine; default: the control plane's own).")
@click.option("--environment", "environment_type", metavar="NAME", help="trainML's environment name (e.g. "
              "DEEPLEARNING_PY310): runs on that Python version when the machine has it, else the default.")
@click.option("--apt-packages", metavar="PKGS", callback=refused("apt"), expose_value=False,
              help="Refused: system packages are not installed.")
@click.option("--conda-packages", metavar="PKGS", callback=refused("conda"), expose_value=False,
              help="Refused: environments are built with pip packages.")
@click.option("--custom-image", metavar="IMAGE", callback=refused("custom_image"), expose_value=False,
              help="Refused: endpoints run as processes, not containers.")
@click.option("--gpu-type", "gpu_types", multiple=True, metavar="TYPE", help="Acceptable GPU type; repeatable.")
@click.option("--gpu-count", metavar="N", type=click.IntRange(0), help="GPUs per worker.")
@click.option("--cpu-count", metavar="N", type=click.IntRange(1),
              help="Worker processes serving the endpoint; at most the server's CPUs.")
@click.option("--disk-size", type=click.IntRange(1), metavar="GB", help="Disk space in GB.")
@click.option("--max-price", type=click.FloatRange(0), metavar="CREDITS", help="Highest price per hour to accept.")
@click.option("--max-concurrency", metavar="N", type=Limited(1, MAX_CONCURRENCY, "threads per worker"),
              help="Calls (or batches) served at once per worker, then queued; at most 1024.")
@click.option("--max-queue", metavar="N", type=Limited(0, MAX_QUEUE, "requests waiting per worker"),
              help="Requests queued per worker before answering 503; at most 1,000,000.")
@click.option("--call-timeout", metavar="SECONDS", type=click.FloatRange(0, min_open=True),
              help="How long one call may run before the caller gets 504 (default 60).")
@click.option("--timeout", type=click.FloatRange(0, min_open=True), default=300, show_default=True,
              metavar="SECONDS", help="How long to wait for the endpoint to be running.")
@click.option("--auth/--no-auth", default=False, show_default=True,
              help="Give the endpoint a key: calls without 'Authorization: Bearer KEY' get 401 (/ping stays open). "
                   "`trainml job connect` shows the key; `trainml job rotate-key` replaces it.")
@click.option("--connect/--no-connect", default=True, show_default=True,
              help="Wait until running, then print the URL and example calls.")
@click.option("--attach/--no-attach", default=False, show_default=True, help="Then follow the job's logs.")
@format_option
@click.pass_obj
def create_endpoint(obj, name, model_dir, git_uri, git_ref, model_id, routes, route_file, env, pip_packages,
                    requirements, python, environment_type, gpu_types, gpu_count, cpu_count, disk_size, max_price,
                    max_concurrency, max_queue, call_timeout, timeout, auth, connect, attach, fmt):
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

    Prints `Endpoint is running at: URL` and a curl command per route once the endpoint answers.
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
    resources = {
        key: value
        for key, value in (("gpu_types", list(gpu_types)), ("gpu_count", gpu_count), ("cpu_count", cpu_count),
                           ("disk_size", disk_size), ("max_price", max_price))
        if value not in (None, [])
    }
    environment = environment_payload(env, pip_packages, requirements, python, environment_type, model_dir)
    out = Output(obj, fmt)
    made = []

    async def work(client):
        with out.progress(f"Creating job {name}"):
            created = await client.jobs.create(name, "endpoint", model=source, endpoint=endpoint,
                                               resources=resources or None, environment=environment)
        made.append(created)
        out.debug(f"Created job {created.name} ({created.id})")
        if (created.dict.get("environment") or {}).get("note"):
            out.note(created.dict["environment"]["note"])
        if connect:
            await wait_running(created, out, timeout)
        key = await endpoint_key(created)
        if out.json_mode:
            out.json({**created.dict, "key": key} if key else created.dict)
        elif connect:
            show_endpoint(created, out, key)
        else:
            out.line(f"Created job {created.name} ({created.id}); status: {created.status}")
            out.note(f"`trainml job connect {created.name}` prints its URL once it is running.")
        if attach:
            await follow_logs(created, out, tail=None if not connect else ATTACH_TAIL)

    try:
        obj.run(work)
    except KeyboardInterrupt:
        if made:  # Ctrl-C stops this command, not the job: say where it went
            out.note(f"\nJob {name} ({made[0].id}) keeps going; see `trainml job get {made[0].id}`.")
        raise


def environment_payload(env, pip_packages, requirements, python, environment_type, model_dir) -> dict | None:
    from ..environment import check_environment, check_requirements_file, split_pip_packages

    environment: dict = {}
    if env:
        environment["env"] = [{"key": key, "value": value} for key, value in env]
    if pip_packages:
        environment["packages"] = {"pip": split_pip_packages(pip_packages)}
    for key, value in (("requirements", requirements), ("python", python), ("type", environment_type)):
        if value:
            environment[key] = value
    check_environment(environment)  # a UsageError: exit 2, nothing sent
    if model_dir:
        check_requirements_file(environment, model_dir)
    return environment or None


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
    out.table(
        ["ID", "NAME", "STATUS", "URL"],
        [(j.id, j.name, j.status, j.url or "") for j in jobs],
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
        out.fields(describe(found))


@job.command("logs")
@click.argument("job_ref", metavar="JOB", type=JOB)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines as they come.")
@click.option("--tail", type=click.IntRange(0), metavar="N", help="Only the last N lines of history.")
@click.option("-t", "--timestamps", is_flag=True, help="Prefix each line with its time and stream.")
@format_option
@click.pass_obj
def logs(obj, job_ref, follow, tail, timestamps, fmt):
    """Print a job's logs (--format json: one JSON object per line)."""
    out = Output(obj, fmt)

    async def work(client):
        await follow_logs(await client.jobs.get(job_ref), out, tail=tail, follow=follow, timestamps=timestamps)

    obj.run(work)


@job.command("attach")
@click.argument("job_ref", metavar="JOB", type=JOB)
@click.pass_obj
def attach_job(obj, job_ref):
    """Follow a job's logs until it stops; exits 1 if it failed."""
    out = Output(obj)

    async def work(client):
        await follow_logs(await client.jobs.get(job_ref), out, tail=ATTACH_TAIL)

    obj.run(work)


@job.command("connect")
@click.argument("job_ref", metavar="JOB", type=JOB)
@click.option("--timeout", type=click.FloatRange(0, min_open=True), default=300, show_default=True,
              metavar="SECONDS", help="How long to wait for a starting job.")
@format_option
@click.pass_obj
def connect_job(obj, job_ref, timeout, fmt):
    """Wait until an endpoint is running, then print its URL and a curl command per route."""
    out = Output(obj, fmt)

    async def work(client):
        found = await client.jobs.get(job_ref)
        await wait_running(found, out, timeout)
        key = await endpoint_key(found)
        if out.json_mode:
            out.json({**found.dict, "key": key} if key else found.dict)
        else:
            show_endpoint(found, out, key)

    obj.run(work)


@job.command("rotate-key")
@click.argument("job_ref", metavar="JOB", type=JOB)
@format_option
@click.pass_obj
def rotate_key(obj, job_ref, fmt):
    """Replace an endpoint's key (a job created with --auth); the old key stops working within a second."""
    out = Output(obj, fmt)

    async def work(client):
        found = await client.jobs.get(job_ref)
        connection = await found.rotate_key()
        if out.json_mode:
            out.json(connection)
            return
        out.line(f"New key for job {found.name}: {connection['key']}")
        if found.url:
            show_endpoint(found, out, connection["key"])

    obj.run(work)


@job.command("stop")
@click.argument("job_ref", metavar="JOB", type=JOB)
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait until it has stopped.")
@click.pass_obj
def stop_job(obj, job_ref, wait):
    """Stop a job; its record and logs stay until `job remove`."""
    out = Output(obj)

    async def work(client):
        found = await client.jobs.get(job_ref)
        with out.progress(f"Stopping job {found.name}"):
            await found.stop(wait=wait)
        out.line(f"Job {found.name} stopped." if wait else f"Job {found.name} is stopping.")

    obj.run(work)


@job.command("start")
@click.argument("job_ref", metavar="JOB", type=JOB)
@click.option("--connect/--no-connect", default=False, show_default=True,
              help="Wait until running, then print the URL and example calls.")
@click.option("--timeout", type=click.FloatRange(0, min_open=True), default=300, show_default=True,
              metavar="SECONDS", help="How long --connect waits.")
@click.pass_obj
def start_job(obj, job_ref, connect, timeout):
    """Start a stopped job again."""
    out = Output(obj)

    async def work(client):
        found = await client.jobs.get(job_ref)
        await found.start()
        if connect:
            await found.refresh()
            await wait_running(found, out, timeout)
            show_endpoint(found, out, await endpoint_key(found))
        else:
            out.line(f"Job {found.name} is starting.")

    obj.run(work)


@job.command("remove")
@click.argument("job_ref", metavar="JOB", type=JOB)
@click.option("--force", is_flag=True, help="Stop it first if it is running.")
@click.pass_obj
def remove_job(obj, job_ref, force):
    """Remove a job and its logs."""
    out = Output(obj)

    async def work(client):
        found = await client.jobs.get(job_ref)
        await found.remove(force=force)
        out.line(f"Removed job {found.name}.")

    obj.run(work)


@job.command("call")
@click.argument("job_ref", metavar="JOB", type=JOB)
@click.argument("route")
@click.option("-d", "--data", type=DATA, help="The body as JSON, @FILE or - for stdin (default: {}).")
@click.pass_obj
def call_job(obj, job_ref, route, data):
    """Call ROUTE (a path such as /predict, or 'POST /predict') of a running endpoint; prints the JSON answer.

    An endpoint that is busy or not ready yet (503) is retried with backoff.
    """
    out = Output(obj)

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


# -- shared by the commands above ------------------------------------------------------------------------------


async def wait_running(job, out: Output, timeout: float) -> None:
    """Poll until `job` is running, with its live status on screen; JobFailed / WaitTimeout otherwise."""
    import asyncio
    import time

    from ..errors import Conflict, WaitTimeout

    deadline = time.monotonic() + timeout
    with out.progress(f"{job.name}: {job.status}") as progress:
        while job.status != "running":
            if job.status == "failed":
                raise await failure(job)
            if job.status not in ACTIVE:
                raise Conflict(f"job {job.name} is {job.status}; start it with `trainml job start {job.name}`")
            if time.monotonic() >= deadline:
                raise WaitTimeout(
                    f"job {job.name} is still starting (status: {job.status}) after {timeout:g} s; "
                    f"it keeps going: wait again with `trainml job connect {job.name}`"
                )
            await asyncio.sleep(POLL_INTERVAL)
            await job.refresh()
            progress.update(f"{job.name}: {job.status}")


async def failure(job, lines: int = 10):
    """A JobFailed naming the reason and the job's last log lines, the two things that explain a failure."""
    from ..errors import JobFailed

    tail = []
    try:
        tail = [entry.get("message", "") async for entry in job.logs(tail=lines)]
    except Exception:  # the reason alone still says what happened
        pass
    message = f"job {job.name} failed: {first_line(job.reason)}"
    if tail:
        message += "\nlast log lines:\n" + "\n".join(f"  {line}" for line in tail)
    return JobFailed(message)


async def follow_logs(job, out: Output, *, tail=None, follow=True, timestamps=False) -> None:
    async for entry in job.logs(follow=follow, tail=tail):
        if out.json_mode:
            out.json_line(entry)
        elif timestamps:
            out.line(printable(f"{entry.get('time', '')} {entry.get('stream', '')} {entry.get('message', '')}"))
        else:
            out.line(printable(entry.get("message", "")))
    if follow:
        await job.refresh()
        if job.status == "failed":
            from ..errors import JobFailed

            raise JobFailed(f"job {job.name} failed: {first_line(job.reason)}")


def first_line(reason) -> str:
    """A reason's headline; the server may append log lines to it, which the caller shows on their own."""
    lines = [line for line in (reason or "").splitlines() if line.strip()]
    return lines[0].rstrip(":") if lines else "no reason recorded"


def job_routes(job) -> list:
    """The job's routes as routespec Routes (for curl examples), from wherever the record keeps them."""
    from ..errors import UsageError
    from ..routespec import parse_routes

    record = job.dict or {}
    raws = record.get("routes") or (record.get("endpoint") or {}).get("routes") or []
    try:
        return parse_routes(raws) if raws else []
    except UsageError:  # a record the server accepted; show no examples rather than fail
        return []


async def endpoint_key(job) -> str | None:
    """The endpoint's key for a job created with --auth (asked of the control plane, which never puts it in a
    job record); None otherwise."""
    if not ((job.dict or {}).get("endpoint") or {}).get("auth"):
        return None
    return (await job.connection()).get("key")


def show_endpoint(job, out: Output, key: str | None = None) -> None:
    """`Endpoint is running at: URL`, then one ready-to-paste curl command per route."""
    from ..routespec import curl_command

    out.line(f"Endpoint is running at: {job.url}")
    if key:
        out.line(f"Endpoint key: {key} (send it as 'Authorization: Bearer KEY'; /ping needs none)")
    for route in job_routes(job):
        out.line(curl_command(job.url, route, key))


def describe(job) -> list[tuple[str, object]]:
    """The `job get` fields, in the order a person reads them."""
    record = job.dict or {}
    model = record.get("model") or {}
    source = model.get("source_type", "")
    if model.get("source_uri"):
        source += f" {model['source_uri']}"
    if model.get("git_ref"):
        source += f" @ {model['git_ref']}"
    resources = record.get("resources") or {}
    env = (record.get("environment") or {}).get("env") or record.get("env") or []
    fields = [("ID", job.id), ("Name", job.name), ("Status", job.status)]
    if job.reason:
        lines = job.reason.splitlines()
        fields.append(("Reason", lines if len(lines) > 1 else job.reason))
    fields += [
        ("URL", job.url or "-"),
        ("Routes", [f"{r.label} -> {r.file}:{r.function}" + (f" (batched, up to {r.batch.max_size})" if r.batch else "")
                    for r in job_routes(job)] or "-"),
        ("Model", source.strip() or "-"),
        ("Resources", ", ".join(f"{k}={_text(v)}" for k, v in resources.items() if v not in (None, [])) or "-"),
        ("Python", describe_environment(record.get("environment") or {})),
        ("Run time", duration(_first(record, "run_time", "run_seconds", "runtime"))),
        ("Credits", f"{job.credits:.4f}" if isinstance(job.credits, (int, float)) else "-"),
        ("Restarts", job.restarts if job.restarts is not None else 0),
        ("Created", when(_first(record, "created", "created_at"))),
    ]
    if env:
        fields.append(("Env", ", ".join(e.get("key", "") for e in env)))
    return fields


def describe_environment(environment: dict) -> str:
    """'3.12.1, pip: tabulate==0.9.0, -r requirements.txt (environment 3f2a...)', or the default."""
    interpreter = environment.get("interpreter") or {}
    version = environment.get("python_version") or interpreter.get("version")
    parts = [version or "the control plane's"]
    pip = (environment.get("packages") or {}).get("pip") or []
    if pip:
        parts.append("pip: " + " ".join(pip))
    requirements = environment.get("requirements_file") or environment.get("requirements")
    if requirements:
        parts.append(f"-r {requirements}")
    text = ", ".join(parts)
    if environment.get("key"):
        text += f" (environment {environment['key']})"
    return text


def _text(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def _first(record: dict, *keys):
    return next((record[key] for key in keys if record.get(key) is not None), None)
