"""`python -m trainml_cli.server`: run the control plane in the foreground (what `trainml server run` does).

The SDK starts it this way, detached, when no control plane answers for its TRAINML_HOME.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import TrainMLError
from ..settings import Settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainml_cli.server", description="Run the trainML control plane.")
    parser.add_argument("--home", help="state folder (default: TRAINML_HOME or ~/.trainml)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 (default): any free port, recorded in HOME/server.json")
    parser.add_argument("--gpus", default=os.environ.get("TRAINML_GPUS"),
                        help="GPUs jobs may use: 'none' or INDEX:TYPE,... (default: ask nvidia-smi)")
    parser.add_argument("--python", default=None, help="Python interpreter that runs endpoints (default: this one)")
    parser.add_argument("--stop-grace", type=float, default=10.0, metavar="SECONDS",
                        help="time endpoints get to finish their calls when stopped, before SIGKILL (default 10)")
    parser.add_argument("--unresponsive-after", type=float, default=30.0, metavar="SECONDS",
                        help="restart a running endpoint that has not answered /ping for this long (default 30)")
    parser.add_argument("--tls-certfile", help="serve the API, the dashboard and every endpoint over HTTPS with this "
                        "certificate (PEM)")
    parser.add_argument("--tls-keyfile", help="the certificate's private key (PEM, unencrypted)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return parser


def main(argv=None) -> int:
    from .app import ServerOptions
    from .daemon import EXIT_ALREADY_RUNNING, EXIT_RESTART, AlreadyRunning, serve

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    settings = Settings.from_env(home=args.home, host=args.host, port=args.port)
    try:
        options = ServerOptions(gpus=args.gpus, python=args.python, stop_grace=args.stop_grace,
                                unresponsive_after=args.unresponsive_after, tls_certfile=args.tls_certfile,
                                tls_keyfile=args.tls_keyfile)
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
