"""An endpoint's port on this machine: the supervisor binds the listening socket itself, on the job's recorded
port while it is free (so its URL survives crashes and control-plane restarts), else on a free one.
"""

from __future__ import annotations

import asyncio
import socket


def bind_socket(host: str, port: int | None) -> socket.socket:
    """A listening TCP socket on `port` if it is free (the job's old URL), else on a free port."""
    for candidate in ([port] if port else []) + [0]:
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, candidate))
        except OSError:
            sock.close()
            continue
        sock.listen(2048)
        return sock
    raise OSError(f"cannot bind a port on {host}")


async def rebind_socket(host: str, port: int, attempts: int = 20) -> socket.socket:
    """The endpoint's own port again once the process that held it is gone (its workers may take a moment to
    die), else a free one."""
    for _ in range(attempts):
        sock = bind_socket(host, port)
        if sock.getsockname()[1] == port:
            return sock
        sock.close()
        await asyncio.sleep(0.1)
    return bind_socket(host, port)
