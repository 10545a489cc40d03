"""Text that tells a user what to run next: names quoted for the shell, failure headlines.

A leaf (the standard library and states.py only) shared by the CLI and the SDK, so a hint pasted into a shell
runs as printed: `trainml job connect 'my model'`, and `trainml job get -- -x` for a name that would read as an
option.
"""

from __future__ import annotations

import shlex

from .states import headline

# How a job asks for no GPU, as API users write it and as CLI users do: server messages say the first, and the
# CLI's error renderer (cli/main.py) shows the second.
CPU_ONLY_API = 'gpu_types ["cpu"]'
CPU_ONLY_CLI = "--gpu-type cpu"


def for_cli(message: str) -> str:
    """A server's message as a CLI user acts on it: the API's field spelled as the CLI's option."""
    return message.replace(CPU_ONLY_API, CPU_ONLY_CLI)


def shell_quote(name: str) -> str:
    """`name` as one shell word, preceded by `--` when it starts with `-` (so click takes it for an argument)."""
    quoted = shlex.quote(str(name))
    return f"-- {quoted}" if str(name).startswith("-") else quoted


def failure_headline(reason) -> str:
    """A failure reason's first line: the server may append log lines, which are shown on their own."""
    return headline(reason).rstrip(":") or "no reason recorded"


def failure_message(name: str, reason, log_lines: list[str]) -> str:
    """`job NAME failed: HEADLINE`, then the job's last log lines: the two things that explain a failure."""
    message = f"job {name} failed: {failure_headline(reason)}"
    if log_lines:
        message += "\nlast log lines:\n" + "\n".join(f"  {line}" for line in log_lines)
    return message
