"""`trainml secret ...`: values a job gets as environment variables (`--secret NAME`), never shown again.

A value is read from stdin when it is not a terminal (`printf %s "$TOKEN" | trainml secret create HF_TOKEN`),
else from a prompt that does not echo; never from the command line, where `ps` and shell history would keep it.
"""

from __future__ import annotations

import click

from .output import Output, format_option, when
from .params import SECRET


@click.group()
def secret():
    """Secrets handed to endpoints as environment variables (--secret NAME); stored 0600, never shown."""


@secret.command("create")
@click.argument("name", type=SECRET)
@format_option
@click.pass_obj
def create_secret(obj, name, fmt):
    """Store (or replace) the secret NAME, read from stdin or a prompt; a job gets it with --secret NAME."""
    stdin = click.get_text_stream("stdin")
    if stdin.isatty():
        value = click.prompt(f"Value of {name}", hide_input=True, confirmation_prompt=True, err=True)
    else:
        value = stdin.read()
        if value.endswith("\n"):  # `echo VALUE |` adds one; a secret with a trailing newline is a mistake
            value = value[:-1].rstrip("\r")
    if not value:
        raise click.UsageError(f"the value of {name} is empty (it is read from stdin or a prompt)")
    stored = obj.run(lambda client: client.secrets.put(name, value))
    out = Output(obj, fmt)
    if out.json_mode:
        out.json(stored)  # its name and when it was set; never the value
        return
    out.line(f"Stored secret {name}.")


@secret.command("list")
@format_option
@click.pass_obj
def list_secrets(obj, fmt):
    """List secret names and when each was set (never their values)."""
    out = Output(obj, fmt)
    rows = obj.run(lambda client: client.secrets.list())
    if out.json_mode:
        out.json(rows)
        return
    out.table(["NAME", "UPDATED"], [(r["name"], when(r["updated"])) for r in rows],
              empty="No secrets yet; store one with `trainml secret create NAME`.")


@secret.command("remove")
@click.argument("name", type=SECRET)
@format_option
@click.pass_obj
def remove_secret(obj, name, fmt):
    """Remove the secret NAME; jobs using it start without it from then on."""
    obj.run(lambda client: client.secrets.remove(name))
    out = Output(obj, fmt)
    if out.json_mode:
        out.json({"name": name, "removed": True})
        return
    out.line(f"Removed secret {name}.")
