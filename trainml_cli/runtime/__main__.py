"""`python -m trainml_cli.runtime`: the command line the control plane launches (see config.py)."""

import sys

from ..contracts import LoadFailure
from ..errors import ModelCodeError, UsageError
from ..launchspec import EXIT_LOAD_FAILED, EXIT_USAGE
from .config import config_from_args
from .server import serve
from .stamps import install as stamp_output


def main(argv=None) -> int:
    stamp_output()
    try:
        return serve(config_from_args(argv))
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ModelCodeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        print(LoadFailure.from_message(str(exc)).record(), file=sys.stderr)  # for the control plane (contracts.py)
        return EXIT_LOAD_FAILED


if __name__ == "__main__":
    sys.exit(main())
