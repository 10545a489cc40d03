"""Everything a command prints goes through one `Output`, so a terminal, a pipe and a script each get the right form.

- Results (tables, records, the URL line, JSON) go to stdout, or to `-o/--output-file`. Progress and notes go to
  stderr, so `url=$(trainml job connect NAME | ...)` and `--format json | jq` see only results.
- On a terminal: one rich Console for colour, tables and the live-status spinner. `NO_COLOR` turns colour off.
- Not a terminal (a pipe, a file, CI): plain aligned text, one status line per change, no escape codes, and rich
  is never imported (it costs ~30 ms and nothing would use it).
- `--silent`: nothing but errors on the terminal; an explicit `--output-file` is still written.
- Text that others wrote (model code's log lines, git's messages, failure reasons) goes through `printable`: a
  control character shows as `\\x1b`, so it can neither drive the terminal (titles, clears, hidden text) nor
  forge what is shown. `--format json` keeps the exact text, escaped by JSON.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import click

from ..states import JobStatus

FORMATS = ("text", "json")

# Colour hints for statuses on a terminal; anything absent stays plain.
STATUS_STYLES = {
    JobStatus.RUNNING.value: "green",
    JobStatus.FAILED.value: "bold red",
    JobStatus.STOPPED.value: "dim",
    JobStatus.STOPPING.value: "yellow",
    JobStatus.STARTING.value: "cyan",
    JobStatus.NEW.value: "cyan",
    JobStatus.WAITING_DOWNLOAD.value: "cyan",
    JobStatus.WAITING_RESOURCES.value: "cyan",
}


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # C0 but tab and newline, DEL, C1


def printable(text: str) -> str:
    """`text` with every control character but tab and newline written as an escape (`\\x1b`), for a terminal."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def cell_width(text: str) -> int:
    """Columns `text` takes on a terminal: wide (East Asian, emoji) characters take two, combining marks none.
    len() would count 'modèle-情感' (decomposed or not) wrongly and shift every column after it."""
    import unicodedata

    width = 0
    for char in text:
        if unicodedata.combining(char) or unicodedata.category(char) in ("Mn", "Me", "Cf"):
            continue
        width += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return width


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Output:
    """The one way commands print. Built per command from the global options (ctx.obj) and `--format`."""

    def __init__(self, obj: Any = None, fmt: str = "text"):
        self.fmt = fmt
        self.silent = bool(getattr(obj, "silent", False))
        self.verbose = int(getattr(obj, "verbose", 0) or 0)
        output_file = getattr(obj, "output_file", None)
        self.to_file = output_file is not None
        # Looked up now, not at import, so test runners that swap sys.stdout are honoured.
        self.stream = output_file if output_file is not None else sys.stdout
        self.terminal = (
            not self.to_file and _isatty(sys.stdout) and os.environ.get("TERM", "") != "dumb"
        )
        self._console = None

    # -- what kind of output ---------------------------------------------------------------------------------
    @property
    def json_mode(self) -> bool:
        return self.fmt == "json"

    @property
    def quiet(self) -> bool:
        """True when results would go nowhere: --silent without an output file."""
        return self.silent and not self.to_file

    @property
    def console(self):
        """The rich Console for the terminal; only ever built when stdout is one."""
        if self._console is None:
            from rich.console import Console

            self._console = Console(
                file=sys.stdout,
                soft_wrap=True,  # never hard-wrap: a curl command must survive copy and paste
                highlight=False,
                no_color=bool(os.environ.get("NO_COLOR")) or None,
            )
        return self._console

    # -- results ----------------------------------------------------------------------------------------------
    def line(self, text: str = "", style: str | None = None) -> None:
        if self.quiet:
            return
        if self.terminal and style:
            from rich.text import Text

            self.console.print(Text(text, style=style))
            return
        self.stream.write(text + "\n")
        self.stream.flush()

    def json(self, data: Any) -> None:
        if self.quiet:
            return
        import json

        self.stream.write(json.dumps(data, indent=2, default=str) + "\n")
        self.stream.flush()

    def json_line(self, data: Any) -> None:
        """One compact JSON object per line (streams such as `job logs --format json`)."""
        if self.quiet:
            return
        import json

        self.stream.write(json.dumps(data, default=str) + "\n")
        self.stream.flush()

    def table(self, columns: Sequence[str], rows: Iterable[Sequence[Any]], *, status_column: str | None = None,
              empty: str | None = None) -> None:
        """A table: rich on a terminal; plain space-aligned columns (header first) for pipes and `awk`."""
        if self.quiet:
            return
        rows = [["" if v is None else str(v) for v in row] for row in rows]
        if not rows and empty and self.terminal:
            self.note(empty)
            return
        if self.terminal:
            from rich import box
            from rich.table import Table

            table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
            for column in columns:
                table.add_column(column, overflow="fold")
            index = columns.index(status_column) if status_column in columns else None
            for row in rows:
                cells = list(row)
                if index is not None and cells[index] in STATUS_STYLES:
                    cells[index] = f"[{STATUS_STYLES[cells[index]]}]{cells[index]}[/]"
                table.add_row(*cells)
            self.console.print(table)
            return
        widths = [max(cell_width(c), *(cell_width(r[i]) for r in rows)) if rows else cell_width(c)
                  for i, c in enumerate(columns)]
        for row in [list(columns), *rows]:
            line = "  ".join(v + " " * (w - cell_width(v)) for v, w in zip(row, widths))
            self.stream.write(line.rstrip() + "\n")
        self.stream.flush()

    def fields(self, pairs: Sequence[tuple[str, Any]]) -> None:
        """`Label:  value` lines for one record; list values continue on indented lines."""
        if self.quiet:
            return
        width = max((len(label) for label, _ in pairs), default=0) + 2
        for label, value in pairs:
            if isinstance(value, (list, tuple)):
                self.line(f"{label}:")
                for item in value:
                    self.line(f"  {item}")
                continue
            text = "" if value is None else str(value)
            head = f"{label + ':':<{width}}"
            if self.terminal and label == "Status" and text in STATUS_STYLES:
                from rich.text import Text

                self.console.print(Text(head) + Text(text, style=STATUS_STYLES[text]))
            else:
                self.line(head + text)

    # -- to the person at the terminal --------------------------------------------------------------------------
    def note(self, text: str) -> None:
        """A message for the person, not for a parser: stderr, and nothing with --silent."""
        if self.silent:
            return
        sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def debug(self, text: str) -> None:
        if self.verbose:
            self.note(text)

    @contextmanager
    def progress(self, text: str, *, spinner_only: bool = False) -> Iterator[Progress]:
        """A live status: a spinner on a terminal, one stderr line per change otherwise, nothing if silent.
        `spinner_only`: the first text only as a spinner (it goes away), never as a line that an error could
        follow (`Creating job X`, then a refusal that created nothing)."""
        if self.silent:
            yield Progress(None)
        elif self.terminal and _isatty(sys.stderr):
            with self.console.status(text) as status:
                yield Progress(status.update, text)
        else:
            progress = Progress(self.note, text if spinner_only else None)
            progress.update(text)
            yield progress


class Progress:
    """What a command sees of a live status: `update(text)` and nothing else."""

    def __init__(self, show, text: str | None = None):
        self._show = show
        self.text = text

    def update(self, text: str) -> None:
        if text == self.text or self._show is None:
            return
        self.text = text
        self._show(text)


def format_option(function=None, *, short: bool = True):
    """`-f/--format text|json` (any case, as trainML's), shared so every command spells it the same way;
    `short=False` where -f means something else (`job logs -f` follows)."""
    if function is None:
        return lambda f: format_option(f, short=short)
    function = verbose_option(function)
    return click.option(
        *(("-f",) if short else ()),
        "--format",
        "fmt",
        type=click.Choice(FORMATS, case_sensitive=False),
        default="text",
        show_default=True,
        help="Output format; json is stable for scripts.",
    )(function)


def _more_verbose(ctx, param, count):
    if count and ctx.obj is not None:
        ctx.obj.verbose = (ctx.obj.verbose or 0) + count
    return count


def verbose_option(function):
    """`-v/--verbose` after the command too (`trainml job list -v`), adding to the global one: every command that
    prints data takes it, with --format."""
    return click.option("-v", "--verbose", count=True, expose_value=False, callback=_more_verbose,
                        help="More detail; repeat for more (as the global -v).")(function)


def when(value: Any) -> str:
    """A timestamp as a person reads it (local time); records may carry epoch seconds or ISO text."""
    if value is None or value == "":
        return "-"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        import time

        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))
    from datetime import datetime

    try:  # ISO 8601 from the API (UTC, "Z"): shown in local time, to the second
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return str(value)


def duration(seconds: Any) -> str:
    if seconds is None or seconds == "":
        return "-"
    try:
        total = int(float(seconds))
    except (TypeError, ValueError):
        return str(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"


def size(value: Any) -> str:
    """Bytes as a person reads them: 1.2 MB."""
    if value is None:
        return "-"
    amount = float(value)
    for unit in ("B", "kB", "MB"):
        if amount < 1000:
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1000
    return f"{amount:.1f} GB"
