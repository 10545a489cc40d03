"""How a job shows in the terminal: its `job get` fields, its endpoint with curl examples, its start-up progress
and its log; shared by `job create`, `job get`, `job start`, `job connect` and `job update`.

Only click-free helpers over the SDK's Job: the commands that use them live in job.py, call.py and revision.py.
"""

from __future__ import annotations

from ..hints import shell_quote
from ..states import JobStatus
from .output import Output, duration, printable, when


async def wait_running(job, out: Output, timeout: float) -> None:
    """Wait (the SDK's long-poll) until `job` is running, with its live status on screen; JobFailed (with the
    reason and last log lines, from the SDK) or WaitTimeout otherwise."""
    from ..errors import Conflict, WaitTimeout

    name = shell_quote(job.name)
    with out.progress(f"{job.name}: {job.status}") as progress:
        if not JobStatus(job.status).is_live:
            if job.status == JobStatus.FAILED:
                raise await job.failure()
            raise Conflict(f"job {job.name} is {job.status}; start it with `trainml job start {name}`")
        try:
            await job.wait_for(JobStatus.RUNNING, timeout, on_status=lambda j: progress.update(f"{j.name}: {j.status}"))
        except WaitTimeout:
            raise WaitTimeout(
                f"job {job.name} is still starting (status: {job.status}) after {timeout:g} s; "
                f"it keeps going: wait again with `trainml job connect {name}`"
            ) from None
        except Conflict:
            raise Conflict(f"job {job.name} is {job.status}; start it with `trainml job start {name}`") from None


async def follow_logs(job, out: Output, *, tail=None, follow=True, timestamps=False) -> None:
    """Print the job's log (the last `tail` lines); with `follow`, the SDK's attach: new lines until the job
    stops, JobFailed if it failed, nothing more if it was removed meanwhile.

    An output line says which revision printed it (`[r2] ...`) once the job has more than one (job update), and
    always with `timestamps`; JSON lines carry it as `revision`."""
    several = not out.json_mode and not timestamps and len(await job.revisions()) > 1

    def show(entry: dict) -> None:
        nonlocal several
        revision = entry.get("revision")
        several = several or (revision or 1) > 1  # an update while following
        tag = f"[r{revision}] " if revision and (several or timestamps) else ""
        if out.json_mode:
            out.json_line(entry)
        elif timestamps:
            out.line(printable(f"{entry.get('time', '')} {entry.get('stream', '')} {tag}{entry.get('message', '')}"))
        else:
            out.line(printable(tag + entry.get("message", "")))

    if follow:
        await job.attach(callback=show, tail=tail)
        return
    async for entry in job.logs(tail=tail):
        show(entry)


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


ATTACH_TAIL = 20  # log lines of history shown before `job attach` (and `create --attach`) follows new ones
# trainML's last line, two spaces and all: scripts take the URL with `| tail -1` (and `awk '{print $NF}'`).
RUNNING_AT = "Endpoint is running at:  "


def key_line(key: str) -> str:
    return f"Endpoint key: {key} (send it as 'Authorization: Bearer KEY'; /ping needs none)"


async def show_endpoint(job, out: Output, key: str | None = None) -> None:
    """One ready-to-paste curl command per route (`curl -N` for a route that streams, as the running endpoint's
    /openapi.json says), then trainML's `Endpoint is running at:  URL` as the last line."""
    from ..routecalls import curl_command

    streaming = await job.streaming_routes()
    if key:
        out.line(key_line(key))
    for route in job_routes(job):
        out.line(curl_command(job.url, route, key, streams=route.label in streaming))
    out.line(RUNNING_AT + job.url)


def route_line(route) -> str:
    """`POST /p -> predict:f(xs: list[float], size: str in ('s', 'l') = 's') (batched, up to 8) -> image/png`."""
    line = f"{route.label} -> {route.file}:{route.function}({', '.join(p.describe() for p in route.body)})"
    if route.batch:
        line += f" (batched, up to {route.batch.max_size})"
    return line + (f" -> {route.content_type}" if route.content_type else "")


def describe(job, verbose: int = 0) -> list[tuple[str, object]]:
    """The `job get` fields, in the order a person reads them; -v adds GPUs, rate, pid and port, -vv the
    environment variables' values."""
    record = job.dict or {}
    environment = record.get("environment") or {}
    env = environment.get("env") or record.get("env") or []
    fields = [("ID", job.id), ("Name", job.name), ("Status", job.status)]
    if job.reason:
        lines = job.reason.splitlines()
        fields.append(("Reason", lines if len(lines) > 1 else job.reason))
    fields += [
        ("URL", job.url or "-"),
        ("Routes", [route_line(r) for r in job_routes(job)] or "-"),
        ("Model", model_text(record.get("model") or {}) or "-"),
        ("Resources", resources_text(record.get("resources") or {}) or "-"),
    ]
    replicas = replicas_text(record.get("endpoint") or {}, record.get("replicas"), record.get("scale"))
    if replicas:
        fields.append(("Replicas", replicas))
    fields += [
        ("Python", describe_environment(environment)),
        ("Run time", duration(_first(record, "run_time", "run_seconds", "runtime"))),
        ("Credits", f"{job.credits:.4f}" if isinstance(job.credits, (int, float)) else "-"),
        ("Restarts", job.restarts if job.restarts is not None else 0),
        ("Created", when(_first(record, "created", "created_at"))),
    ]
    if env:
        if verbose > 1:
            fields.append(("Env", [f"{e.get('key', '')}={e.get('value', '')}" for e in env]))
        else:
            fields.append(("Env", ", ".join(e.get("key", "") for e in env)))
    if environment.get("secrets"):
        fields.append(("Secrets", ", ".join(environment["secrets"])))
    if verbose:
        gpus = record.get("gpus") or []
        fields += [
            ("GPUs", ", ".join(f"{g.get('index')}: {g.get('name')}" for g in gpus) or "none"),
            ("Hourly rate", f"{record.get('hourly_rate', 0):g} credits"),
            ("PID", record.get("pid") or "-"),
            ("Port", record.get("port") or "-"),
            ("Updated", when(record.get("updated"))),
        ]
    return fields


def replicas_text(endpoint: dict, live: list[dict] | None, scale: dict | None = None) -> list[str] | str | None:
    """The configured replicas, then the live ones as the backend reports them (Ray: Serve's replicas)."""
    from ..replicaspec import describe as configured

    lines = []
    asked = configured(endpoint)
    if asked:
        lines.append(f"configured: {asked}")
    if endpoint.get("ray_actor_options"):
        import json

        lines.append("ray_actor_options: " + json.dumps(endpoint["ray_actor_options"], sort_keys=True))
    if live is not None:
        running = sum(1 for r in live if r.get("state") == "RUNNING")
        lines.append(f"live: {running} running" + (f" of {len(live)}" if len(live) != running else "")
                     + (" (scaled to zero: the next call starts one and is held meanwhile)" if not live else ""))
        if scale and scale.get("cold_start_ms") is not None:
            lines.append(f"last cold start: {scale['cold_start_ms']:g} ms")
        lines += [f"  {r.get('state')} pid {r.get('pid') or '-'} on {r.get('node_ip') or '-'}" for r in live]
    return lines if len(lines) > 1 else (lines[0] if lines else None)


def model_text(model: dict) -> str:
    source = model.get("source_type", "")
    if model.get("source_uri"):
        source += f" {model['source_uri']}"
    if model.get("git_ref"):
        source += f" @ {model['git_ref']}"
    return source.strip()


def resources_text(resources: dict) -> str:
    return ", ".join(f"{k}={_text(v)}" for k, v in resources.items() if v not in (None, []))


def describe_environment(environment: dict) -> str:
    """'3.9.18, pip: numpy==1.23.5, -r requirements.txt, MXNET_PY39_19: mxnet==1.9.* (environment 3f2a...)',
    or the default."""
    interpreter = environment.get("interpreter") or {}
    version = environment.get("python_version") or interpreter.get("version")
    parts = [version or environment.get("default_python") or "the control plane's"]
    pip = (environment.get("packages") or {}).get("pip") or []
    if pip:
        parts.append("pip: " + " ".join(pip))
    requirements = environment.get("requirements_file") or environment.get("requirements")
    if requirements:
        parts.append(f"-r {requirements}")
    if environment.get("type"):
        added = environment.get("framework_packages") or []
        parts.append(f"{environment['type']}: " + (" ".join(added) if added else "adds nothing"))
    text = ", ".join(parts)
    if environment.get("key"):
        text += f" (environment {environment['key']})"
    return text


def _text(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def _first(record: dict, *keys):
    return next((record[key] for key in keys if record.get(key) is not None), None)
