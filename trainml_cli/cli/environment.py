"""`trainml environment ...`: the virtualenvs built for endpoints' packages, and the interpreters available."""

from __future__ import annotations

import click

from .output import Output, format_option, size, when


@click.group()
def environment():
    """Endpoint environments: their own Python packages, built once and shared.

    A job gets one when it names pip packages (--pip-packages), its model folder holds a requirements.txt,
    it picks another --python, or it names one of trainML's environments (--environment PYTORCH_PY39_113 adds
    torch==1.13.*). Jobs asking for the same packages on the same Python share one.
    """


@environment.command("list")
@format_option
@click.pass_obj
def list_environments(obj, fmt):
    """List environments (key, Python, packages: --pip-packages and the requirements file's lines, size, jobs, last
    use) and the interpreters jobs can use."""
    out = Output(obj, fmt)
    listing = obj.run(lambda client: client.environments.listing())
    if out.json_mode:
        out.json(listing)
        return
    rows = []
    for env in listing["environments"]:
        packages = list(env.get("pip") or [])
        if env.get("requirements") is not None:  # the requirements file's own lines: what it holds, not its name
            packages += env["requirements"]
        elif env.get("requirements_file"):  # a control plane from before the lines were listed
            packages.append(f"-r {env['requirements_file']}")
        jobs = f"{len(env['in_use'])} running" if env["in_use"] else "none running"
        jobs += f" / {len(env['jobs'])}" if env["jobs"] else ""
        # Whole: a terminal's table wraps the cell; a pipe gets it on one line.
        rows.append((env["key"], env["python"], ", ".join(packages) or "(runtime only)",
                     "building" if env.get("building") else size(env.get("size")), jobs, when(env.get("last_used"))))
    out.table(["KEY", "PYTHON", "PACKAGES", "SIZE", "JOBS", "LAST USED"], rows,
              empty="No environments yet; a job with --pip-packages or a requirements.txt builds one.")
    pythons = ", ".join(i["version"] + (" (default)" if i["default"] else "") for i in listing["interpreters"])
    out.note(f"Interpreters for --python: {pythons}")
    out.note("trainML's --environment names and the packages each adds: trainml environment names")


@environment.command("names")
@format_option
@click.pass_obj
def list_names(obj, fmt):
    """List trainML's --environment names: the Python each picks, the packages it adds, their download size."""
    out = Output(obj, fmt)
    listing = obj.run(lambda client: client.environments.listing())
    if "trainml" not in listing:  # a control plane from before the table: this package's own
        from ..frameworks import FRAMEWORKS

        listing["trainml"] = [f.to_dict() for f in FRAMEWORKS.values()]
    if out.json_mode:
        out.json(listing["trainml"])
        return
    out.table(["NAME", "PYTHON", "ADDS", "DOWNLOAD"],
              [(f["id"], f["py_version"], ", ".join(f["packages"]), f["download"]) for f in listing["trainml"]])


@environment.command("remove")
@click.argument("key")
@click.pass_obj
def remove_environment(obj, key):
    """Remove the environment KEY (or a unique prefix of it); refused while a job uses it."""
    removed = obj.run(lambda client: client.environments.remove(key))
    Output(obj).line(f"Removed environment {removed}.")


@environment.command("prune")
@format_option
@click.pass_obj
def prune_environments(obj, fmt):
    """Remove every environment that no job uses (stopped and failed jobs rebuild theirs on start)."""
    removed = obj.run(lambda client: client.environments.prune())
    out = Output(obj, fmt)
    if out.json_mode:
        out.json({"removed": removed})
        return
    out.line(f"Removed {len(removed)} environment(s)" + (f": {', '.join(removed)}." if removed else "."))


def environment_payload(env, pip_packages, requirements, python, environment_type, model_dir) -> dict | None:
    """The create payload's `environment` from `job create endpoint`'s options, checked (a UsageError: exit 2,
    nothing sent)."""
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
