"""`trainml server run|start|stop|restart|status`: the local control plane for TRAINML_HOME.

Other commands start it themselves when none answers, so these are for when you want control: run it in the
foreground (logs on the terminal), on a fixed port, with declared GPUs, or stop it. Only `run` imports the
server stack; the others talk to it over HTTP like any client.

The options given to `run`, `start`, `restart` and `install` are saved for the home (serveroptions.py) and
every later start has them, whoever starts it; an option not given keeps its saved value.
"""

from __future__ import annotations

import dataclasses

import click

from .output import Output, format_option


def _click_option(option):
    """One row of serveroptions.OPTIONS as a click option."""
    if option.choices:
        kind = click.Choice(option.choices)
    elif option.existing_file:
        kind = click.Path(exists=True, dir_okay=False)
    elif option.kind is int:
        kind = click.IntRange(option.low, option.high)
    elif option.kind is float:
        kind = click.FloatRange(option.low, option.high)
    else:
        kind = str
    return click.option(option.flag, option.dest, type=kind, default=option.default, envvar=option.env,
                        show_default=option.default is not None, metavar=option.metavar, help=option.help)


def server_options(function):
    """Every control plane option (serveroptions.OPTIONS, defined once), passed to the command as **options."""
    from ..serveroptions import OPTIONS

    for option in reversed(OPTIONS):
        function = _click_option(option)(function)
    return function


def _resolved(settings, options: dict) -> tuple[dict, dict, dict]:
    """(given, chosen, effective): the options this command line gives (not those left at their defaults), the
    saved ones they override (serveroptions.resolve), and every option's value. Checked before anything
    starts: a bad combination or certificate pair exits 2 naming it, nothing started or saved."""
    from ..serveroptions import option_problem, resolve
    from ..tls import check_pair

    context = click.get_current_context()
    given = {name: value for name, value in options.items()
             if context.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE}
    chosen, effective = resolve(settings, given)
    problem = option_problem(effective)  # e.g. --backend ray without --ray-address
    if problem:
        raise click.UsageError(problem)
    pair = check_pair(effective["tls_certfile"], effective["tls_keyfile"])
    if pair:  # absolute: a background control plane runs in TRAINML_HOME
        effective["tls_certfile"], effective["tls_keyfile"] = pair
    return {name: chosen[name] for name in given if name in chosen}, chosen, effective


def _server_options(effective: dict):
    from ..server.app import ServerOptions
    from ..serveroptions import option_fields

    return ServerOptions(**{field: effective[field] for field in option_fields()})


def _warn_exposure(host, tls: bool, options: dict | None = None) -> None:
    """Beyond loopback: say what is exposed (no TLS; endpoints without keys), on stderr; on the Ray backend,
    what Ray Serve exposes on the cluster's nodes."""
    from ..serveroptions import default
    from ..tls import exposure_warnings, ray_exposure_warnings

    lines = exposure_warnings(host, tls)
    if options and options.get("backend") == "ray":
        lines += ray_exposure_warnings(options.get("ray_serve_host") or default("ray_serve_host"))
    for line in lines:
        click.echo(line, err=True)


def _settings(obj, effective: dict):
    return dataclasses.replace(obj.settings, host=effective["host"], port=effective["port"])


@click.group()
def server():
    """Run and manage the local control plane (one per TRAINML_HOME)."""


@server.command("run")
@server_options
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
              show_default=True)
@click.pass_obj
def run(obj, log_level, **options):
    """Run the control plane in the foreground until Ctrl-C (which also stops its endpoints)."""
    from ..server.daemon import serve

    try:
        _given, chosen, effective = _resolved(obj.settings, options)
        serve(_settings(obj, effective), _server_options(effective), log_level=log_level, chosen=chosen)
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C once it has shut down cleanly: a normal end here
        pass


@server.command("start")
@server_options
@click.option("--timeout", type=click.FloatRange(1), default=60, show_default=True, metavar="SECONDS",
              help="How long to wait for it to answer.")
@format_option
@click.pass_obj
def start(obj, timeout, fmt, **options):
    """Start the control plane in the background; returns once it answers."""
    from ..sdk import autostart

    out = Output(obj, fmt)
    settings = obj.settings
    given, _chosen, effective = _resolved(settings, options)
    info = autostart.running(settings)
    if info is None:
        _warn_exposure(effective["host"], effective["tls_certfile"] is not None, effective)
        with out.progress(f"Starting the control plane for {settings.home}"):
            info = autostart.start(settings, given, timeout=timeout)
        message = f"Control plane running at: {info['url']} (pid {info['pid']})"
    else:
        message = f"Control plane already running at: {info['url']} (pid {info['pid']})"
        _warn_different(info, given)
    if out.json_mode:
        out.json(_public(info))
    else:
        out.line(message)


@server.command("stop")
@click.option("--timeout", type=click.FloatRange(1), default=30, show_default=True, metavar="SECONDS",
              help="Grace period before it is killed.")
@click.pass_obj
def stop(obj, timeout):
    """Stop the control plane and its endpoints (jobs resume on the next start)."""
    from ..sdk import autostart

    out = Output(obj)
    settings = obj.settings
    with out.progress(f"Stopping the control plane for {settings.home}"):
        info = autostart.stop(settings, timeout=timeout)
    if info is None:
        out.line(f"No control plane runs for {settings.home}.")
    else:
        out.line(f"Control plane at {info['url']} stopped.")


def _warn_different(info: dict, given: dict) -> None:
    """`server start --gpus ...` while one runs with other options: say how to apply them, on stderr."""
    from ..serveroptions import to_argv

    running = info.get("options") or {}
    differ = {name: value for name, value in given.items() if name in running and running[name] != value}
    if differ:
        flags = " ".join(to_argv(differ))
        click.echo(f"warning: it runs with other options; `trainml server restart {flags}` replaces it with "
                   "these (its endpoints keep serving)", err=True)


@server.command("restart")
@server_options
@click.option("--timeout", type=click.FloatRange(1), default=60, show_default=True, metavar="SECONDS",
              help="How long to wait for the old one to exit, and for the new one to answer.")
@format_option
@click.pass_obj
def restart(obj, timeout, fmt, **options):
    """Replace the control plane (after an upgrade) while the endpoints keep serving.

    The new control plane starts with the saved options (the old one's), overridden by the options given here
    (which are saved in turn), and adopts every endpoint still running. With none running, this starts one.
    """
    from ..sdk import autostart

    out = Output(obj, fmt)
    settings = obj.settings
    given, _chosen, effective = _resolved(settings, options)
    _warn_exposure(effective["host"], effective["tls_certfile"] is not None)
    with out.progress(f"Restarting the control plane for {settings.home}"):
        info = autostart.restart(settings, given, timeout=timeout)
    if out.json_mode:
        out.json(_public(info))
    else:
        out.line(f"Control plane running at: {info['url']} (pid {info['pid']}); endpoints kept serving")


UNIT = """\
[Unit]
Description=trainML control plane for {home}
After=network.target

[Service]
# The options are the ones saved in {options_file} (`trainml server install|start|restart` save them).
ExecStart={command}
# Stopping (systemctl stop) signals the control plane alone, and it stops its endpoints itself. Nothing else may
# kill them: a crash, a kill -9 or a reload leaves them serving, and the control plane started again adopts them.
KillMode=process
Restart=on-failure
RestartSec=1
# reload: the control plane exits {restart_exit} leaving the endpoints serving, and is started again at once (an
# upgrade).
ExecReload=/bin/kill -{restart_signal} $MAINPID
RestartForceExitStatus={restart_exit}
# {already_running_exit}: another control plane already serves this home.
SuccessExitStatus={already_running_exit}
TimeoutStopSec={stop_timeout}

[Install]
WantedBy=default.target
"""


def _unit_quote(word: str) -> str:
    word = word.replace("%", "%%")  # systemd's specifiers
    if word and all(c.isalnum() or c in "/._-:=,+@%" for c in word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


@server.command("install")
@server_options
@click.option("--name", default="trainml", show_default=True, help="The unit's name (NAME.service).")
@click.option("--print", "print_only", is_flag=True, help="Print the unit instead of writing it.")
@click.pass_obj
def install(obj, name, print_only, **options):
    """Write a systemd user unit that runs the control plane (and restarts it if it dies).

    Endpoints outlive the control plane under systemd too: `systemctl --user reload NAME` replaces the control
    plane (an upgrade) while they keep serving; `systemctl --user stop NAME` stops them with it.
    """
    import os
    import sys
    from pathlib import Path

    from ..contracts import EXIT_ALREADY_RUNNING, EXIT_RESTART, restart_signal_name
    from ..serveroptions import save_options

    out = Output(obj)
    settings = dataclasses.replace(obj.settings, home=obj.settings.home.expanduser().absolute())
    _given, chosen, effective = _resolved(settings, options)
    home = settings.home
    # The unit names only the home: the options live in the saved file, so that `server restart --gpus ...`
    # holds for the service's later starts too, rather than the unit's command line undoing it.
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    save_options(settings, chosen)
    command = [sys.executable, "-m", "trainml_cli.server", "--home", str(home)]
    unit = UNIT.format(home=home, command=" ".join(_unit_quote(w) for w in command),
                       options_file=str(settings.options_file).replace("%", "%%"),
                       stop_timeout=int(effective["stop_grace"]) + 30, restart_exit=EXIT_RESTART,
                       restart_signal=restart_signal_name(), already_running_exit=EXIT_ALREADY_RUNNING)
    if print_only:
        out.line(unit.rstrip("\n"))
        return
    folder = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "systemd" / "user"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.service"
    path.write_text(unit)
    out.line(f"Wrote {path}")
    out.line(f"Start it now and at login: systemctl --user daemon-reload && systemctl --user enable --now {name}")
    out.line(f"Upgrade without stopping endpoints: systemctl --user reload {name}")
    out.line("Keep it running after you log out: loginctl enable-linger $USER")


@server.command("status")
@format_option
@click.pass_obj
def status(obj, fmt):
    """Show whether the control plane runs, where, and its jobs by status. Exit 1 if it does not run."""
    from ..sdk import autostart

    out = Output(obj, fmt)
    settings = obj.settings
    if settings.api_url:
        answer = autostart.health(settings.api_url, verify=settings.verify(settings.api_url))
        info = {**answer, "url": settings.api_url} if answer else None
    else:
        info = autostart.running(settings)
    if info is None:
        where = settings.api_url or settings.home
        if out.json_mode:
            out.json({"status": "not running", "home": str(settings.home), "url": settings.api_url})
        else:
            out.line(f"No control plane answers for {where}.")
        return 1
    counts, backend = _job_counts(settings, info["url"])
    info = {**_public(info), "jobs": counts, "backend": backend}
    if out.json_mode:
        out.json(info)
        return 0
    out.fields([
        ("Status", "running"),
        ("URL", info["url"]),
        ("PID", info.get("pid", "-")),
        ("Home", info.get("home", "-")),
        ("Version", info.get("version", "-")),
        ("Started", info.get("started", "-")),
        ("Options", _options_text(info.get("options"))),
        ("Jobs", ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) if counts else "none"),
        *_backend_fields(backend),
    ])
    return 0


def _public(info: dict) -> dict:
    keys = ("status", "url", "pid", "home", "version", "started", "options")
    return {"status": "running", **{k: info[k] for k in keys if k in info and k != "status"}}


def _options_text(options: dict | None) -> str:
    """The effective options that differ from the defaults, as a command line; all of them are in --format json."""
    from ..serveroptions import OPTIONS, to_argv

    if options is None:  # a control plane from before options were recorded, or one reached by TRAINML_API_URL
        return "-"
    changed = {o.dest: options.get(o.dest) for o in OPTIONS if options.get(o.dest) != o.default}
    return " ".join(to_argv(changed)) or "the defaults"


def _backend_fields(backend: dict) -> list[tuple[str, str]]:
    """Backend, and for Ray its head, Serve URL and the cluster's resources (free/total)."""
    if not backend:
        return []
    fields = [("Backend", backend.get("backend", "-"))]
    if backend.get("backend") == "ray":
        fields += [("Ray head", f"{backend.get('ray_address')} (Ray {backend.get('ray_version', '?')})"),
                   ("Serve URL", backend.get("serve_url", "-"))]
        if backend.get("python"):
            fields.append(("Python", backend["python"]))
    if backend.get("error"):
        fields.append(("Cluster", backend["error"]))
    resources = backend.get("resources") or {}
    shown = []
    for key in ("CPU", "GPU"):
        if key in resources:
            shown.append(f"{resources[key]['total'] - resources[key]['used']:g}/{resources[key]['total']:g} {key} free")
    for key in ("memory", "objectStoreMemory"):
        if key in resources:
            free = (resources[key]["total"] - resources[key]["used"]) / 1024**3
            shown.append(f"{free:.1f}/{resources[key]['total'] / 1024**3:.1f} GiB {key} free")
    if shown:
        fields.append(("Resources", ", ".join(shown)))
    elif backend.get("backend") == "local":
        gpus = ", ".join(f"{g['index']}: {g['name']}" for g in backend.get("gpus", [])) or "none"
        fields.append(("Resources", f"{backend.get('cpus')} CPUs, GPUs: {gpus}"))
    return fields


def _job_counts(settings, url) -> tuple[dict, dict]:
    import asyncio

    from ..errors import TrainMLError
    from ..sdk.client import TrainML

    async def count():
        async with TrainML(settings=dataclasses.replace(settings, api_url=url)) as client:
            counts: dict[str, int] = {}
            for job in await client.jobs.list():
                counts[job.status] = counts.get(job.status, 0) + 1
            try:
                backend = await client.http.request("GET", "/api/backend", timeout=15)
            except TrainMLError:
                backend = {}
            return counts, backend

    try:
        return asyncio.run(count())
    except TrainMLError:
        return {}, {}


from .dashboard import dashboard  # noqa: E402  (the web dashboard's sign-in link, cli/dashboard.py)

server.add_command(dashboard)
