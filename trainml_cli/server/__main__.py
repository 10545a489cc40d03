"""`python -m trainml_cli.server`: run the control plane in the foreground (what `trainml server run` does).

The SDK starts it this way, detached, when no control plane answers for its TRAINML_HOME.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import TrainMLError
from ..serveroptions import add_arguments, option_fields
from ..settings import Settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainml_cli.server", description="Run the trainML control plane.")
    parser.add_argument("--home", help="state folder (default: TRAINML_HOME or ~/.trainml)")
    add_arguments(parser)  # --host, --port, --gpus, ...: the one table in serveroptions.py
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return parser


def main(argv=None) -> int:
    from .app import ServerOptions
    from .daemon import EXIT_ALREADY_RUNNING, EXIT_RESTART, AlreadyRunning, serve

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    settings = Settings.from_env(home=args.home, host=args.host, port=args.port)
    try:
        options = ServerOptions(**{field: getattr(args, field) for field in option_fields()})
        if serve(settings, options, log_level=args.log_level, args=argv):
            return EXIT_RESTART
    except AlreadyRunning as exc:
        sys.stderr.write(f"Error: {exc}\n")
        return EXIT_ALREADY_RUNNING
    except TrainMLError as exc:
        sys.stderr.write(f"Error: {exc}\n")
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
