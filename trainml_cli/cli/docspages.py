"""The docs site's CLI reference (docs/cli/*.md), generated from the click app as the man pages are.

One page for the root command (global options, environment, output, exit status) and one per command group
(`trainml job`, `trainml server`, ...) holding every command under it, so the site's reference can never drift
from `--help`. Pure function of the code: `python -m trainml_cli.cli.manpages` writes the pages and `--check` (and
tests/test_docs.py) fails when the checked-in ones are stale.
"""

from __future__ import annotations

import inspect
import re
import textwrap

import click

from . import manpages

FOLDER = "docs/cli"
_NOTE = ("<!-- Generated from the click app by `python -m trainml_cli.cli.manpages`: "
         "edit the commands' help, not this. -->")
_SPECIAL = re.compile(r"([\\*_\[\]<>#|])")


def escape(text: str) -> str:
    """Markdown for click help: backticked parts stay code, everything else is literal text."""
    parts = text.split("`")
    if len(parts) % 2 == 0:  # an unpaired backtick: nothing is code
        parts = [text]
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            out.append(f"`{part}`")
        else:
            out.append(_SPECIAL.sub(lambda m: "&lt;" if m.group(1) == "<" else "&gt;" if m.group(1) == ">"
                                    else "\\" + m.group(1), part))
    return "".join(out)


def help_blocks(text: str) -> list[str]:
    """Click help -> Markdown paragraphs; a `\\b` paragraph (an example) keeps its lines, as a code block."""
    text = inspect.cleandoc(text or "").split("\f")[0]
    out = []
    for block in text.split("\n\n"):
        if block.startswith("\b\n") or block == "\b":
            out.append("```text\n" + textwrap.dedent(block[2:]).strip("\n") + "\n```")
        elif block.startswith("  "):  # an indented example, which click prints as it is
            out.append("```text\n" + textwrap.dedent(block).strip("\n") + "\n```")
        elif block.strip():
            out.append(escape(" ".join(block.split())))
    return out


def command_section(ctx: click.Context, command: click.Command, level: int) -> list[str]:
    path = ctx.command_path
    short = command.get_short_help_str(limit=200)
    lines = ["#" * level + f" {path}", "", "```text", f"{path} {' '.join(command.collect_usage_pieces(ctx))}",
             "```", ""]
    for block in help_blocks(command.help) or [escape(short)]:
        lines += [block, ""]
    options = [p.get_help_record(ctx) for p in command.get_params(ctx) if isinstance(p, click.Option)]
    options = [record for record in options if record]
    if options:
        lines += ["**Options**", ""]
        lines += [f"- `{opts}`: {escape(' '.join(text.split()))}".rstrip(": ") for opts, text in options]
        lines.append("")
    if isinstance(command, click.Group):
        children = _children(ctx, command)
        if children:
            lines += ["**Commands**", ""]
            for name, sub in children:
                anchor = f"{path} {name}".replace(" ", "-")
                lines.append(f"- [`{name}`](#{anchor}): {escape(sub.get_short_help_str(limit=200))}")
            lines.append("")
    return lines


def _children(ctx: click.Context, group: click.Group) -> list[tuple[str, click.Command]]:
    out = []
    for name in group.list_commands(ctx):
        try:
            sub = group.get_command(ctx, name)
        except ImportError:
            continue
        if sub is not None and not sub.hidden:
            out.append((name, sub))
    return out


def _root_page(ctx: click.Context, command: click.Group) -> str:
    lines = [_NOTE, "", "# CLI reference", "", escape(command.get_short_help_str(limit=200)), "",
             "```text", f"{manpages.PROG} {' '.join(command.collect_usage_pieces(ctx))}", "```", ""]
    for block in help_blocks(command.help)[1:]:
        lines += [block, ""]
    options = [p.get_help_record(ctx) for p in command.get_params(ctx) if isinstance(p, click.Option)]
    lines += ["## Global options", "", "Given before the command (`trainml -v job list`).", ""]
    lines += [f"- `{opts}`: {escape(' '.join(text.split()))}" for opts, text in filter(None, options)]
    lines += ["", "## Commands", ""]
    for name, sub in _children(ctx, command):
        lines.append(f"- [`{manpages.PROG} {name}`]({name}.md): {escape(sub.get_short_help_str(limit=200))}")
    lines += ["", "## Environment", ""]
    lines += [f"- `{name}`: {escape(text)}" for name, text in manpages.ENVIRONMENT]
    lines += ["", "## Output", "", escape(manpages.OUTPUT), "", "## Exit status", ""]
    lines += [f"- `{code}`: {escape(text)}" for code, text in manpages.EXIT_STATUS]
    return "\n".join(lines) + "\n"


def pages() -> dict[str, str]:
    """Every page, keyed by its path relative to the repository."""
    from .main import cli

    root = click.Context(cli, info_name=manpages.PROG, **cli.context_settings)
    out = {f"{FOLDER}/index.md": _root_page(root, cli)}
    for name, group in _children(root, cli):
        lines = [_NOTE, ""]
        top = click.Context(group, info_name=name, parent=root, **group.context_settings)
        for ctx, command in manpages.walk(group, top, []):
            level = min(ctx.command_path.count(" "), 4)
            lines += command_section(ctx, command, level)
        out[f"{FOLDER}/{name}.md"] = "\n".join(lines).rstrip("\n") + "\n"
    return out
