"""`trainml server dashboard [--open]`: a one-time sign-in link to the control plane's web dashboard.

The link comes from `POST /api/dashboard/login-links`, which only the API token may call; it works once and
for a few minutes, and trades itself for a browser session cookie. Like every other command, this finds the
control plane for TRAINML_HOME (starting one when none answers) through the SDK.
"""

from __future__ import annotations

import click

from .output import Output, format_option


@click.command("dashboard")
@click.option("--open", "open_browser", is_flag=True, help="Open the link in the default web browser.")
@format_option
@click.pass_obj
def dashboard(obj, open_browser, fmt):
    """Print a one-time sign-in link to the web dashboard.

    The link works once, for a few minutes; run this again for a new one.
    """
    out = Output(obj, fmt)

    async def work(client):
        return await client.http.request("POST", "/api/dashboard/login-links")

    link = obj.run(work)
    if out.json_mode:
        out.json(link)
    else:
        minutes = max(1, round(link.get("expires_in", 300) / 60))
        out.line(f"Dashboard sign-in link (works once, for {minutes} minutes):")
        out.line(link["url"])
    if open_browser:
        import webbrowser

        if not webbrowser.open(link["url"]):
            click.echo("Could not open a browser here; open the link above yourself.", err=True)
