"""`python -m trainml_cli.server`: run the control plane in the foreground (what `trainml server run` does).

The SDK starts it this way, detached, when no control plane answers for its TRAINML_HOME. The options given
here override the ones saved for the home (serveroptions.resolve); the rest come from the saved file.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import TrainMLError
from ..serveroptions import OPTIONS, add_arguments, option_fields, option_problem, resolve
from ..settings import Settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainml_cli.server", description="Run the trainML control plane.")
    parser.add_argument("--home", help="state folder (default: TRAINML_HOME or ~/.trainml)")
    add_arguments(parser)  # --host, --port, --gpus, --backend, ...: the one table in serveroptions.py
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return parser


def main(argv=None) -> int:
    from ..contracts import EXIT_ALREADY_RUNNING, EXIT_RESTART
    from .app import ServerOptions
    from .daemon import AlreadyRunning, serve

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    given = {option.dest: getattr(args, option.dest) for option in OPTIONS if hasattr(args, option.dest)}
    try:
        chosen, values = resolve(Settings.from_env(home=args.home), given)
    except TrainMLError as exc:
        parser.error(str(exc))
    problem = option_problem(values)
    if problem:
        parser.error(problem)
    if values["ray_token_file"] and not os.access(values["ray_token_file"], os.R_OK):
        parser.error(f"--ray-token-file {values['ray_token_file']}: cannot be read")
    settings = Settings.from_env(home=args.home, host=values["host"], port=values["port"])
    try:
        options = ServerOptions(**{field: values[field] for field in option_fields()})
        if serve(settings, options, log_level=args.log_level, chosen=chosen):
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
