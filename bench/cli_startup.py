"""How fast `trainml` starts: `--help` and `job create endpoint --help` against a bare click CLI and `python -c pass`.

    python bench/cli_startup.py [-n 40]

Each command runs n times as a fresh process, round-robin so that machine noise hits all of them alike; the
median wall time is reported with the ratios the issue sets targets for: at most 2x a bare click CLI, and at
most 0.25x the trainML 1.0.2 CLI (0.38 s measured on its reference machine; not installed here, so that ratio
uses the reference number and says so).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

TRAINML_REFERENCE = 0.38  # trainML 1.0.2 `--help` (aiohttp, boto3, jose at import), from the issue

# A bare click CLI of the same shape: a group, a nested group, a command with a dozen options.
BARE_CLI = '''
import click

@click.group()
@click.option("--debug", is_flag=True)
def cli(debug):
    """Bare click CLI."""

@cli.group()
def job():
    """Jobs."""

@job.group()
def create():
    """Create."""

@create.command()
@click.argument("name")
@click.option("--model-dir")
@click.option("--git-uri")
@click.option("--route", multiple=True)
@click.option("--env", multiple=True)
@click.option("--gpu-count", type=int)
@click.option("--cpu-count", type=int)
@click.option("--timeout", type=float, default=300)
@click.option("--connect/--no-connect", default=True)
def endpoint(name, **options):
    """Create an endpoint."""

cli()
'''


def trainml_command() -> list[str]:
    """The installed console script run by this interpreter (no shell shims in between), else `-m`."""
    script = Path(sysconfig.get_path("scripts")) / "trainml"
    if script.is_file():
        return [sys.executable, str(script)]
    return [sys.executable, "-m", "trainml_cli"]


def timed(argv: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=True)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--repeat", type=int, default=40, help="runs per command (default 40)")
    parser.add_argument("--json", action="store_true", help="print the medians as JSON")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        bare = Path(tmp) / "bare_click.py"
        bare.write_text(BARE_CLI)
        # Same environment for all; TRAINML_HOME points at an empty folder so nothing real is read.
        env = {**os.environ, "TRAINML_HOME": tmp, "NO_COLOR": "1"}
        trainml = trainml_command()
        cases = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "bare click --help": [sys.executable, str(bare), "--help"],
            "bare click job create endpoint --help": [sys.executable, str(bare), "job", "create", "endpoint", "--help"],
            "trainml --help": [*trainml, "--help"],
            "trainml job create endpoint --help": [*trainml, "job", "create", "endpoint", "--help"],
        }
        for argv in cases.values():  # warm the OS file cache and the .pyc files
            timed(argv, env)
        samples: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.repeat):
            for name, argv in cases.items():
                samples[name].append(timed(argv, env))

    median = {name: statistics.median(values) for name, values in samples.items()}
    ratios = {
        "trainml --help / bare click --help": median["trainml --help"] / median["bare click --help"],
        "trainml job create endpoint --help / bare click": median["trainml job create endpoint --help"]
        / median["bare click job create endpoint --help"],
        "trainml --help / trainML 1.0.2 (reference 0.38 s)": median["trainml --help"] / TRAINML_REFERENCE,
        "trainml job create endpoint --help / trainML 1.0.2 (reference 0.38 s)": median[
            "trainml job create endpoint --help"
        ]
        / TRAINML_REFERENCE,
    }
    if args.json:
        print(json.dumps({"median_seconds": median, "ratios": ratios, "repeat": args.repeat}, indent=2))
        return 0
    print(f"{args.repeat} runs each, {sys.executable} (Python {sys.version.split()[0]})")
    print(f"{'command':<42} {'median':>9} {'min':>9} {'max':>9}")
    for name, values in samples.items():
        print(f"{name:<42} {median[name] * 1000:>7.1f}ms {min(values) * 1000:>7.1f}ms {max(values) * 1000:>7.1f}ms")
    print()
    targets = {"bare": 2.0, "trainML": 0.25}
    for name, ratio in ratios.items():
        target = targets["bare"] if "bare" in name else targets["trainML"]
        verdict = "ok" if ratio <= target else "OVER TARGET"
        print(f"{name:<72} {ratio:5.2f}x  (target <= {target}x: {verdict})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
