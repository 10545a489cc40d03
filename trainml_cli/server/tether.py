"""`python -m trainml_cli.server.tether PARENT_PID -- COMMAND...`: run COMMAND so that it ends with its parent.

The supervisor starts every endpoint through this shim. It asks Linux to send SIGTERM to the process when its
parent (the control plane) dies, even by kill -9, then replaces itself with COMMAND (same pid, and the request
survives exec). Without it, endpoints would outlive a crashed control plane, holding their ports and writing
into pipes nobody reads; with it they shut down gracefully and the next control plane starts them again
(see Jobs.reconcile). Where prctl is not available the shim just runs COMMAND.
"""

from __future__ import annotations

import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[1] != "--":
        sys.stderr.write("usage: python -m trainml_cli.server.tether PARENT_PID -- COMMAND...\n")
        sys.exit(2)
    parent = int(argv[0])
    command = argv[2:]
    _die_with_parent()
    # The parent may have died before prctl took effect; then nobody would ever signal us.
    if os.getppid() != parent:
        sys.exit(1)
    os.execv(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
