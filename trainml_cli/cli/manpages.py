"""Shell completions, man pages and the docs site's CLI reference, generated from the click app so they can
never drift from the code.

    python -m trainml_cli.cli.manpages             # (re)write completions/, man/ and docs/cli/ in the current folder
    python -m trainml_cli.cli.manpages --check     # exit 1 naming every stale or missing file
    python -m trainml_cli.cli.manpages --install   # into ~/.local (or --prefix DIR), where shells and man look

The completion scripts are click's own shims: on TAB the shell runs `trainml` with `_TRAINML_COMPLETE` set and
click answers from the live command tree (job and model names come from the server when one answers). Only the
fish shim is ours: click 8.4.0's fish template is broken (pallets/click#3502), so `FishComplete` below carries a
working template and the matching answer format, registered whenever the shell asks (see `register`).

Man pages are plain roff (one per command: trainml.1, trainml-job.1, trainml-job-create-endpoint.1, ...), built
from each command's help, usage and options. No date goes in, so the output is a pure function of the code.
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
from pathlib import Path

import click
from click.shell_completion import CompletionItem, FishComplete as _ClickFishComplete, get_completion_class

from .. import __version__

PROG = "trainml"
COMPLETE_VAR = "_TRAINML_COMPLETE"
SHELLS = {"bash": "trainml.bash", "zsh": "trainml.zsh", "fish": "trainml.fish"}

_FISH_SOURCE = """\
function %(complete_func)s;
    set -l response (env %(complete_var)s=fish_complete COMP_WORDS=(commandline -cp) \
COMP_CWORD=(commandline -t) %(prog_name)s);

    for completion in $response;
        set -l metadata (string split -m 1 "," -- $completion);

        if test $metadata[1] = "dir";
            __fish_complete_directories $metadata[2];
        else if test $metadata[1] = "file";
            __fish_complete_path $metadata[2];
        else if test $metadata[1] = "plain";
            echo $metadata[2];
        end;
    end;
end;

complete --no-files --command %(prog_name)s --arguments "(%(complete_func)s)";
"""


class FishComplete(_ClickFishComplete):
    """One line per item, `type,value<TAB>help`: fish splits command output on newlines, so none may hide inside."""

    source_template = _FISH_SOURCE

    def format_completion(self, item: CompletionItem) -> str:
        value = " ".join(str(item.value).split("\n"))
        if item.help:
            return f"{item.type},{value}\t{' '.join(item.help.split())}"
        return f"{item.type},{value}"


def register() -> None:
    """Use our fish class for `_TRAINML_COMPLETE=fish_*`; called by main() only when that variable is set."""
    from click.shell_completion import add_completion_class

    add_completion_class(FishComplete, "fish")


def completion_script(shell: str) -> str:
    from .main import cli

    register()
    return get_completion_class(shell)(cli, {}, PROG, COMPLETE_VAR).source().rstrip("\n") + "\n"


# -- man pages --------------------------------------------------------------------------------------------------


def walk(command: click.Command, ctx: click.Context, skipped: list[str]):
    """Yield (context, command) for `command` and every visible subcommand, depth first, in name order."""
    yield ctx, command
    if not isinstance(command, click.Group):
        return
    for name in command.list_commands(ctx):
        try:
            sub = command.get_command(ctx, name)
        except ImportError as exc:  # a subcommand whose module is not written yet: say so, document the rest
            skipped.append(f"{ctx.command_path} {name}: {exc}")
            continue
        if sub is None or sub.hidden:
            continue
        yield from walk(sub, click.Context(sub, info_name=name, parent=ctx, **sub.context_settings), skipped)


def page_name(ctx: click.Context) -> str:
    return ctx.command_path.replace(" ", "-")


def roff(text: str) -> str:
    """Escape text for roff: backslashes, hyphens (so options paste as ASCII) and leading dots or quotes."""
    return _lead(_escape(text))


def _escape(text: str) -> str:
    return text.replace("\\", "\\e").replace("-", "\\-")


def _lead(text: str) -> str:
    return "\n".join("\\&" + line if line[:1] in (".", "'") else line for line in text.split("\n"))


def help_paragraphs(text: str) -> list[str]:
    """Click help -> roff paragraphs; a `\\b` paragraph keeps its line breaks as click's own help does."""
    text = inspect.cleandoc(text or "").split("\f")[0]
    out = []
    for block in text.split("\n\n"):
        if block.startswith("\b\n") or block == "\b":
            out.append(".nf\n.RS 2\n" + roff(block[2:]) + "\n.RE\n.fi")
        elif block.strip():
            out.append(roff(" ".join(block.split())))
    return out


def man_page(ctx: click.Context, command: click.Command) -> str:
    name = page_name(ctx)
    path = ctx.command_path
    short = command.get_short_help_str(limit=200).rstrip(".")
    lines = [
        f'.TH "{name.upper()}" "1" "" "{PROG} {__version__}" "{PROG} manual"',
        ".SH NAME",
        f"{roff(name)} \\- {roff(short)}",
        ".SH SYNOPSIS",
        f".B {roff(path)}",
        roff(" ".join(command.collect_usage_pieces(ctx))),
        ".SH DESCRIPTION",
    ]
    lines.append("\n.PP\n".join(help_paragraphs(command.help or short)))
    options = [p.get_help_record(ctx) for p in command.get_params(ctx) if isinstance(p, click.Option)]
    options = [record for record in options if record]
    if options:
        lines.append(".SH OPTIONS")
        for opts, help_text in options:
            lines += [".TP", f"\\fB{roff(opts)}\\fR", roff(" ".join(help_text.split())) or "\\&"]
    children = []
    if isinstance(command, click.Group):
        lines.append(".SH COMMANDS")
        for sub_name in command.list_commands(ctx):
            try:
                sub = command.get_command(ctx, sub_name)
            except ImportError:
                continue
            if sub is None or sub.hidden:
                continue
            child = f"{name}-{sub_name}"
            children.append(child)
            lines += [".TP", f"\\fB{roff(sub_name)}\\fR",
                      f"{roff(sub.get_short_help_str(limit=200))} See \\fB{roff(child)}\\fR(1)."]
    if ctx.parent is None:
        lines += _root_sections()
    see_also = ([page_name(ctx.parent)] if ctx.parent else []) + children
    if ctx.parent is not None and ctx.parent.parent is not None:
        see_also.insert(0, PROG)
    if see_also:
        lines += [".SH SEE ALSO", ", ".join(f"\\fB{roff(page)}\\fR(1)" for page in see_also)]
    return "\n".join(lines) + "\n"


# What the root page says beyond the click app, as data: the man page and the docs site are both made from it.
# Text in backticks is an option or a name, set in bold in roff and as code in Markdown.
ENVIRONMENT = [
    ("TRAINML_HOME", "State folder: database, stored models, logs (default ~/.trainml); same as `--home`."),
    ("TRAINML_API_URL", "Control plane URL; same as `--api-url`."),
    ("NO_COLOR", "When set and not empty, no colour in terminal output."),
]
OUTPUT = (
    "Results go to standard output (or `--output-file`); progress and notes go to standard error. "
    "On a terminal, tables and a live status spinner; otherwise plain text and one status line per change. "
    "Commands that show records take `--format json` for scripts."
)
EXIT_STATUS = [
    ("0", "Done."),
    ("1", "The operation failed: the job failed, a wait timed out, or the server refused or could not be reached."),
    ("2", "Usage or validation error (bad options, bad route JSON, a route that breaks the spec); nothing was sent."),
    ("130", "Interrupted."),
]


def roff_marked(text: str) -> str:
    """roff for text whose backticked parts are names: those in bold."""
    parts = text.split("`")
    return _lead("".join(f"\\fB{_escape(part)}\\fR" if i % 2 else _escape(part) for i, part in enumerate(parts)))


def _root_sections() -> list[str]:
    lines = [".SH ENVIRONMENT"]
    for name, text in ENVIRONMENT:
        lines += [".TP", f"\\fB{roff(name)}\\fR", roff_marked(text)]
    lines += [".SH OUTPUT", roff_marked(OUTPUT), ".SH EXIT STATUS"]
    for code, text in EXIT_STATUS:
        lines += [".TP", code, roff_marked(text)]
    return lines


def man_pages() -> tuple[dict[str, str], list[str]]:
    from .main import cli

    skipped: list[str] = []
    root = click.Context(cli, info_name=PROG, **cli.context_settings)
    pages = {f"{page_name(ctx)}.1": man_page(ctx, command) for ctx, command in walk(cli, root, skipped)}
    return pages, skipped


def generate() -> tuple[dict[str, str], list[str]]:
    """Every generated file, keyed by its path relative to the output folder."""
    files = {f"completions/{file}": completion_script(shell) for shell, file in SHELLS.items()}
    pages, skipped = man_pages()
    files.update({f"man/{name}": text for name, text in pages.items()})
    from .docspages import pages as markdown_pages

    files.update(markdown_pages())
    return files, skipped


def stale(root: Path, files: dict[str, str]) -> list[str]:
    """Paths under root that differ from `files`, are missing, or are generated leftovers of a removed command."""
    problems = [path for path, text in files.items()
                if not (root / path).is_file() or (root / path).read_text() != text]
    for folder, pattern in (("completions", "trainml.*"), ("man", "*.1"), ("docs/cli", "*.md")):
        for path in sorted((root / folder).glob(pattern)):
            if f"{folder}/{path.name}" not in files:
                problems.append(f"{folder}/{path.name} (no such command any more)")
    return problems


def install_targets(prefix: Path, user: bool) -> dict[str, Path]:
    share = prefix / "share"
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return {
        "completions/trainml.bash": share / "bash-completion/completions/trainml",
        "completions/trainml.zsh": share / "zsh/site-functions/_trainml",
        "completions/trainml.fish": (config / "fish/completions" if user else share / "fish/vendor_completions.d")
        / "trainml.fish",
        "man": share / "man/man1",
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainml_cli.cli.manpages", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=".", help="folder that holds completions/, man/ and docs/cli/ (default: .)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if any file is stale")
    parser.add_argument("--install", action="store_true", help="install completions and man pages under --prefix")
    parser.add_argument("--prefix", default=None, help="install prefix (default: ~/.local)")
    args = parser.parse_args(argv)
    files, skipped = generate()
    for line in skipped:
        print(f"warning: not documented, cannot import {line}", file=sys.stderr)
    if args.check:
        problems = stale(Path(args.out), files)
        for path in problems:
            print(f"stale: {path}", file=sys.stderr)
        if problems:
            print("regenerate with: python -m trainml_cli.cli.manpages", file=sys.stderr)
        return 1 if problems else 0
    if args.install:
        user = args.prefix is None
        targets = install_targets(Path(args.prefix or Path.home() / ".local").expanduser(), user)
        for path, text in files.items():
            if path.startswith("docs/"):  # the site's pages are for the site, not for shells or man
                continue
            target = targets["man"] / Path(path).name if path.startswith("man/") else targets[path]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        for key, target in targets.items():
            print(f"installed {key} -> {target}")
        print(f"zsh: add {targets['completions/trainml.zsh'].parent} to fpath before compinit", file=sys.stderr)
        return 0
    out = Path(args.out)
    for path, text in files.items():
        (out / path).parent.mkdir(parents=True, exist_ok=True)
        (out / path).write_text(text)
    for path in stale(out, files):  # generated files of commands that are gone
        (out / path.split(" ")[0]).unlink()
    print(f"wrote {len(files)} files under {out.resolve()}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
