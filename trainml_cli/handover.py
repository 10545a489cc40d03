"""A local endpoint's listening socket, handed back to a control plane that did not start it.

The local backend binds each job's socket and hands it to the endpoint process it starts; a new revision gets the
same socket, so old and new accept from one queue (server/backends/switch.py). A control plane that dies or
restarts loses its copy, and the next one adopts the endpoint without it. To switch such an endpoint to new code,
the control plane asks the endpoint's leader process for its socket, as HAProxy and Envoy pass theirs on: over a
Unix socket, with SCM_RIGHTS. Nothing is re-bound (SO_REUSEPORT would drop what waits in a closed listener's
queue), so nothing is refused or lost.

The leader (started with `--hand-over`) listens on an abstract Unix address named after its pid (`address`), in a
daemon thread that answers each connection with the descriptor and closes it. Both sides check the other through
the kernel's peer credentials: the endpoint gives its socket only to a process of its own user (one that could
read it from /proc or ptrace it anyway), and the control plane takes one only from the pid it recorded, so a
process of another user that took the name first cannot pass it a socket of its own.

A leaf: the standard library only (the runtime imports it in the endpoint's own environment).
"""

from __future__ import annotations

import os
import socket
import struct
import sys
import threading

_CREDENTIALS = struct.Struct("3i")  # struct ucred: pid, uid, gid
TIMEOUT = 5.0


def address(pid: int) -> str:
    """Where the endpoint whose leader is `pid` offers its listening socket (Linux's abstract namespace: no file
    to clean up when it dies, and no path-length limit from the job's folder)."""
    return f"\0trainml-endpoint-socket-{pid}"


def _peer(connection: socket.socket) -> tuple[int, int]:
    pid, uid, _gid = _CREDENTIALS.unpack(connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                               _CREDENTIALS.size))
    return pid, uid


def offer(listener: socket.socket) -> bool:
    """Hand `listener` to whoever of this user asks, from a daemon thread, for as long as this process lives.
    False when the address cannot be had (the endpoint serves on; it cannot be updated without a restart)."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(address(os.getpid()))
        server.listen(8)
    except OSError as exc:
        server.close()
        print(f"warning: cannot offer the listening socket for updates: {exc}", file=sys.stderr, flush=True)
        return False
    threading.Thread(target=_answer, args=(server, listener), name="socket-handover", daemon=True).start()
    return True


def _answer(server: socket.socket, listener: socket.socket) -> None:
    while True:
        try:
            connection, _ = server.accept()
        except OSError:
            return
        with connection:
            try:
                connection.settimeout(TIMEOUT)
                if _peer(connection)[1] == os.getuid():
                    socket.send_fds(connection, [b"listener"], [listener.fileno()])
            except OSError:  # a caller that went away: the next one is answered all the same
                pass


def take(pid: int, port: int, timeout: float = TIMEOUT) -> socket.socket:
    """The listening socket of the endpoint whose leader is `pid`, serving `port`. Raises OSError saying why not
    (an endpoint started before sockets were handed over, one that is gone, or not the one asked for)."""
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(timeout)
    try:
        try:
            client.connect(address(pid))
        except (ConnectionRefusedError, FileNotFoundError):
            raise OSError(f"endpoint process {pid} does not offer its socket (it was started by an older version, "
                          "or it is stopping)") from None
        if _peer(client) != (pid, os.getuid()):
            raise OSError(f"the process offering endpoint {pid}'s socket is not that endpoint")
        _, fds, _, _ = socket.recv_fds(client, 64, 1)
    finally:
        client.close()
    if not fds:
        raise OSError(f"endpoint process {pid} sent no socket")
    sock = socket.socket(fileno=fds[0])
    for extra in fds[1:]:
        os.close(extra)
    try:
        listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        bound = sock.getsockname()[1] if sock.family in (socket.AF_INET, socket.AF_INET6) else None
    except OSError:
        listening, bound = 0, None
    if not listening or sock.type != socket.SOCK_STREAM or bound != port:
        sock.close()
        raise OSError(f"endpoint process {pid} sent a socket that is not its listener on port {port}")
    return sock
