"""`trainml model ...`: store model code once (a folder or a git repository) and reuse it across jobs."""

from __future__ import annotations

from contextlib import nullcontext

import click

from .output import Output, format_option, size, when
from .params import MODEL, model_source


@click.group()
def model():
    """Store model code and reuse it across jobs.

    MODEL is a model's id or its unique name; jobs use it with `--model-id`.
    """


@model.command("create")
@click.argument("name")
@click.argument("path", required=False)
@click.option("-s", "--source", type=click.Choice(["local", "git"], case_sensitive=False),
              help="What PATH is (trainML's option): a local "
              "folder or a git URI (default: local when PATH is a folder, else git).")
@click.option("--model-dir", type=click.Path(exists=True, file_okay=False), help="Model code in this local folder "
              "(the same as PATH with --source local).")
@click.option("--git-uri", metavar="URI", help="Model code from this git repository (the same as PATH with "
              "--source git).")
@click.option("--git-ref", metavar="REF", help="Branch, tag or commit SHA of the repository (default: its HEAD).")
# trainML uploads a local model in a second step (`model connect`) and streams its creation log (`--attach`).
# Here the code is stored before create returns, so both flags are accepted for trainML's scripts and change
# nothing: `--attach` shows the progress create shows anyway.
@click.option("--attach/--no-attach", default=True, show_default=True,
              help="trainML's flag: show the creation's progress (here it always finishes before create returns).")
@click.option("--connect/--no-connect", default=True, show_default=True,
              help="trainML's flag: upload the local source now (here always: a later `model connect` is a no-op).")
@format_option
@click.pass_obj
def create_model(obj, name, path, source, model_dir, git_uri, git_ref, attach, connect, fmt):
    """Store model code as NAME, from PATH (trainML's form: a folder or a git URI) or --model-dir / --git-uri.

    \b
      trainml model create sentiment-v1 examples/sentiment
      trainml model create sentiment-git https://example.com/models.git --source git --git-ref v2
    """
    if path is not None:
        import os

        if model_dir or git_uri:
            raise click.UsageError(f"PATH {path!r} and {'--model-dir' if model_dir else '--git-uri'} are both "
                                   "given: choose one model source")
        kind = source or ("local" if os.path.isdir(path) else "git")
        if kind == "local":
            if not os.path.isdir(path):
                raise click.BadParameter(f"{path!r} is not a folder (for a git URI add --source git)",
                                         param_hint="'PATH'")
            model_dir = path
        else:
            git_uri = path
    elif source:
        raise click.UsageError("--source says what PATH is: give PATH too, e.g. `trainml model create NAME ./model`")
    source = model_source(model_dir, git_uri, git_ref, allow_stored=False)
    out = Output(obj, fmt)

    async def work(client):
        with out.progress(f"Storing model {name}") if attach else nullcontext():
            return await client.models.create(
                name, source_type=source["source_type"], source_uri=source["source_uri"], git_ref=source.get("git_ref")
            )

    created = obj.run(work)
    if out.json_mode:
        out.json(created.dict)
    else:
        out.line(f"Created model {created.name} ({created.id}), {size(created.size)}.")


@model.command("attach")
@click.argument("model_ref", metavar="MODEL", type=MODEL)
@click.pass_obj
def attach_model(obj, model_ref):
    """Show a model's creation (trainML's command; here it is complete once `model create` returns)."""
    _say_stored(obj, model_ref)


@model.command("connect")
@click.argument("model_ref", metavar="MODEL", type=MODEL)
@click.option("--attach/--no-attach", default=True, show_default=True, help="trainML's flag; nothing to follow here.")
@click.pass_obj
def connect_model(obj, model_ref, attach):
    """Upload a model's local source (trainML's command; here `model create` already stored it)."""
    _say_stored(obj, model_ref)


@model.command("disconnect")
@click.argument("model_ref", metavar="MODEL", type=MODEL)
@click.pass_obj
def disconnect_model(obj, model_ref):
    """End a model's upload (trainML's command; here nothing is left open once `model create` returns)."""
    _say_stored(obj, model_ref)


def _say_stored(obj, model_ref) -> None:
    found = obj.run(lambda client: client.models.get(model_ref))
    Output(obj).line(f"Model {found.name} ({found.id}) is stored: {size(found.size)} from {found.source_type}, "
                     f"created {when(found.created)}. Nothing to follow.")


@model.command("rename")
@click.argument("model_ref", metavar="MODEL", type=MODEL)
@click.argument("new_name", metavar="NEW_NAME")
@format_option
@click.pass_obj
def rename_model(obj, model_ref, new_name, fmt):
    """Rename a stored model (jobs made from it keep running)."""
    renamed = obj.run(lambda client: client.models.rename(model_ref, new_name))
    out = Output(obj, fmt)
    if out.json_mode:
        out.json(renamed.dict)
    else:
        out.line(f"Renamed model {model_ref} to {renamed.name}.")


@model.command("list")
@format_option
@click.pass_obj
def list_models(obj, fmt):
    """List stored models."""
    out = Output(obj, fmt)
    models = obj.run(lambda client: client.models.list())
    if out.json_mode:
        out.json([m.dict for m in models])
        return
    out.table(
        ["ID", "NAME", "SOURCE", "SIZE", "CREATED"],
        [(m.id, m.name, m.source_type, size(m.size), when(m.created)) for m in models],
        empty="No models yet; store one with `trainml model create`.",
    )


@model.command("get")
@click.argument("model_ref", metavar="MODEL", type=MODEL)
@format_option
@click.pass_obj
def get_model(obj, model_ref, fmt):
    """Show a stored model."""
    out = Output(obj, fmt)
    found = obj.run(lambda client: client.models.get(model_ref))
    if out.json_mode:
        out.json(found.dict)
        return
    record = found.dict or {}
    source = f"{found.source_type} {found.source_uri or ''}".strip()
    if record.get("git_ref"):
        source += f" @ {record['git_ref']}"
    out.fields([
        ("ID", found.id),
        ("Name", found.name),
        ("Source", source),
        ("Size", size(found.size)),
        ("Created", when(found.created)),
    ])


@model.command("remove")
@click.argument("model_ref", metavar="MODEL", type=MODEL)
@click.option("--force/--no-force", default=False, show_default=True,
              help="trainML's flag; a stored model is removed either way (jobs made from it keep running).")
@click.pass_obj
def remove_model(obj, model_ref, force):
    """Remove a stored model."""
    out = Output(obj)

    async def work(client):
        found = await client.models.get(model_ref)
        await client.models.remove(found.id)
        return found

    removed = obj.run(work)
    out.line(f"Removed model {removed.name}.")
