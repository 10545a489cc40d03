"""The `trainml` root group: global options, lazy subcommands, and the one place errors are rendered.

Subcommand modules are imported only when their command runs (or when help lists them), so `trainml --help`
never pays for the SDK, the server or the runtime.
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from .. import __version__
from ..errors import TrainMLError

# name -> (module, attribute, short help). The short help is here so `trainml --help` imports nothing else.
SUBCOMMANDS = {
    "job": ("trainml_cli.cli.job", "job", "Create endpoints and manage jobs."),
    "model": ("trainml_cli.cli.model", "model", "Store model code and reuse it across jobs."),
    "server": ("trainml_cli.cli.server", "server", "Run and manage the local control plane."),
    "endpoint": ("trainml_cli.cli.endpoint", "endpoint", "Serve model code in the foreground (no control plane)."),
    "environment": ("trainml_cli.cli.environment", "environment", "Endpoint environments: their own Python packages."),
    "gpu": ("trainml_cli.cli.gpu", "gpu", "GPU types, their prices, and this machine's GPUs."),
    "secret": ("trainml_cli.cli.secret", "secret", "Secrets handed to endpoints as environment variables."),
}


class LazyGroup(click.Group):
    """A group whose subcommands live in modules imported on first use."""

    def __init__(self, *args, lazy: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy = lazy or {}

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx, name):
        if name in self.lazy:
            module_name, attribute, _ = self.lazy[name]
            return getattr(importlib.import_module(module_name), attribute)
        return super().get_command(ctx, name)

    def format_commands(self, ctx, formatter):
        # Short help from the table, so listing commands does not import them.
        rows = [(name, self.lazy[name][2]) for name in sorted(self.lazy)]
        rows += [(n, c.get_short_help_str()) for n, c in sorted(self.commands.items()) if n not in self.lazy]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


class Context:
    """What the global options decide, built once and handed to every subcommand as ctx.obj."""

    def __init__(self, api_url=None, home=None, output_file=None, silent=False, verbose=0, debug=False, ca_file=None):
        self.api_url = api_url
        self.ca_file = ca_file
        self.home = home
        self.output_file = output_file
        self.silent = silent
        self.verbose = verbose
        self.debug = debug
        self._settings = None

    @property
    def settings(self):
        if self._settings is None:
            from ..settings import Settings

            self._settings = Settings.from_env(home=self.home, api_url=self.api_url, ca_file=self.ca_file)
        return self._settings

    def client(self):
        from ..sdk.client import TrainML

        return TrainML(settings=self.settings)

    def run(self, work):
        """Run `await work(client)` with a fresh SDK client, closed afterwards: how click commands use the async SDK."""
        import asyncio

        async def runner():
            async with self.client() as client:
                return await work(client)

        # Not asyncio.run: on Ctrl-C it waits for the SDK's worker threads, and one may sit in a 25 s long-poll
        # (`logs -f`, waits). Closing the loop does not wait for them, and run() leaves without joining them.
        loop = asyncio.new_event_loop()
        interrupted = False
        try:
            return loop.run_until_complete(runner())
        except KeyboardInterrupt:
            interrupted = True
            raise
        finally:
            if not interrupted:  # close half-read log streams while their loop still runs
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()


@click.group(
    cls=LazyGroup,
    lazy=SUBCOMMANDS,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
)
@click.version_option(__version__, "--version", prog_name="trainml")
@click.option("--api-url", envvar="TRAINML_API_URL", metavar="URL",
              callback=lambda ctx, param, value: _check_url(value),
              help="Control plane URL (default: the one under --home); a host[:port] without a scheme, as "
                   "trainML's, means https:// (http:// for localhost and 127.x).")
@click.option("--home", envvar="TRAINML_HOME", type=click.Path(file_okay=False),
              help="State folder (default: $TRAINML_HOME, else ~/.trainml).")
@click.option("--ca-file", envvar="TRAINML_CA_FILE", type=click.Path(exists=True, dir_okay=False),
              help="Verify an HTTPS control plane and its endpoints with the CA certificates in this PEM file "
                   "(default: REQUESTS_CA_BUNDLE, else the system's).")
@click.option("-o", "--output-file", type=click.File("w"), help="Write command output to this file.")
@click.option("-s", "--silent", is_flag=True, help="Print nothing but errors.")
@click.option("-v", "--verbose", count=True, help="More detail; repeat for more.")
@click.option("-d", "--debug", is_flag=True, help="Show tracebacks for errors.")
@click.pass_context
def cli(ctx, api_url, home, ca_file, output_file, silent, verbose, debug):
    """Turn a folder of Python model code into a REST endpoint.

    \b
    trainml job create endpoint --model-dir examples/sentiment \\
        --route '{"verb":"POST","path":"/predict","file":"predict","function":"predict",
                  "body":[{"name":"text","type":"str"}]}' sentiment
    """
    ctx.obj = Context(api_url, home, output_file, silent, verbose, debug, ca_file=ca_file)


@cli.command("configure")
def configure():
    """trainML's project setup; a self-hosted control plane has no accounts or projects to choose."""
    click.echo("Nothing to configure: a self-hosted control plane has no accounts or projects. Commands use the "
               "control plane at --api-url / TRAINML_API_URL, else the one under --home / TRAINML_HOME "
               "(default ~/.trainml), started when needed; TRAINML_API_TOKEN gives its token.")


def _check_url(value):
    from ..settings import api_url_of

    try:
        return api_url_of(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--api-url'") from None


def main(argv=None) -> int:
    """Entry point: run the CLI and turn every failure into one line and an exit code."""
    debug = _asks_debug(argv if argv is not None else sys.argv[1:])
    if "_TRAINML_COMPLETE" in os.environ:
        # The shell asks for completions: use the completion classes our generated scripts were made with.
        from .manpages import register

        register()
    try:
        result = cli.main(args=argv, prog_name="trainml", standalone_mode=False)
    except TrainMLError as exc:
        if debug:
            import traceback

            traceback.print_exc()
        from ..hints import for_cli

        error(for_cli(str(exc)))
        return exc.exit_code
    except click.exceptions.Abort as exc:
        # Ctrl-C reaches us as Abort (click wraps KeyboardInterrupt) or bare: the same word either way.
        click.echo("Interrupted." if isinstance(exc.__cause__, KeyboardInterrupt) else "Aborted.", err=True)
        return 130
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        return 130
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except BrokenPipeError:
        # `trainml job list | head`: the reader went away; not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except Exception as exc:
        # A bug or an unexpected failure of the machine: still one line, the traceback only on request.
        if debug:
            import traceback

            traceback.print_exc()
        error(f"{type(exc).__name__}: {exc} (run with --debug for the traceback)")
        return 1
    # Without standalone mode click returns --help's and --version's exit code, or what a command returned.
    return result if isinstance(result, int) else 0


def _asks_debug(argv: list[str]) -> bool:
    """Whether the global -d/--debug is given: only before the command, where `job call -d` cannot be meant.
    Which global options take a value comes from the root group's own options, so a new one cannot be missed."""
    takes_value = {name for param in cli.params if isinstance(param, click.Option) and not param.is_flag
                   and not param.count for name in param.opts}
    taking_value = False
    for arg in argv:
        if taking_value:
            taking_value = False
        elif arg in ("-d", "--debug"):
            return True
        elif arg in takes_value:
            taking_value = True
        elif not arg.startswith("-"):
            return False
    return False


def error(message: str) -> None:
    from .output import printable

    lines = printable(message).split("\n")
    click.echo(f"Error: {lines[0]}", err=True)
    for line in lines[1:]:
        click.echo(line, err=True)


def run() -> None:
    code = main()
    if code == 130:
        # Interrupted: a worker thread may still be blocked in a request; exit now instead of joining it.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    run()
