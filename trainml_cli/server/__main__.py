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
    parser.add_argument("--backend", choices=["local", "ray"], default="local",
                        help="where endpoints run: local processes (default) or a Ray Serve cluster")
    parser.add_argument("--ray-address", help="the Ray head's dashboard, http://HEAD:8265 (--backend ray)")
    parser.add_argument("--ray-token-file", help="file holding the Ray cluster's auth token (RAY_AUTH_MODE=token)")
    parser.add_argument("--ray-serve-host", default="127.0.0.1", help="where Ray Serve's HTTP proxies listen")
    parser.add_argument("--ray-serve-port", type=int, default=8000, help="Ray Serve's HTTP port (default 8000)")
    parser.add_argument("--ray-deploy-timeout", type=float, default=120.0, metavar="SECONDS",
                        help="a Ray Serve deploy not running after this long fails the job (default 120)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return parser


def main(argv=None) -> int:
    from .app import ServerOptions
    from .daemon import EXIT_ALREADY_RUNNING, EXIT_RESTART, AlreadyRunning, serve

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.backend == "ray" and not args.ray_address:
        parser.error("--backend ray needs --ray-address http://HEAD:8265 (the Ray head's dashboard)")
    if args.ray_token_file and not os.access(args.ray_token_file, os.R_OK):
        parser.error(f"--ray-token-file {args.ray_token_file}: cannot be read")
    settings = Settings.from_env(home=args.home, host=args.host, port=args.port)
    try:
        options = ServerOptions(gpus=args.gpus, python=args.python, stop_grace=args.stop_grace,
                                unresponsive_after=args.unresponsive_after, backend=args.backend,
                                ray_address=args.ray_address, ray_token_file=args.ray_token_file,
                                ray_serve_host=args.ray_serve_host, ray_serve_port=args.ray_serve_port,
                                ray_deploy_timeout=args.ray_deploy_timeout)
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
