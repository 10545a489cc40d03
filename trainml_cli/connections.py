"""Connection limits uvicorn's httptools protocol does not have: a cap on header bytes, a header-read timeout, and
room for new callers when idle connections fill the connection cap.

A leaf both servers use (the endpoint runtime's workers and the control plane); it imports uvicorn, so only
they import it, when they start serving.

uvicorn bounds idle keep-alive connections (`timeout_keep_alive`) and, with `limit_concurrency`, answers 503 past
a number of connections; but once a request's first byte arrives it waits for the rest of the headers forever
and takes headers of any size. So one client could hold a connection open by sending a header byte every few
seconds (slowloris), or make the endpoint buffer megabytes of headers. llhttp, under httptools, has no size
limit of its own, so the protocol counts the bytes it is given while a request's headers are incomplete (an
addition per read, a bound) and counts them exactly only when that bound passes the limit; the timer is armed only
when a read leaves the headers incomplete, and cancelled when they are complete.

Past MAX_HEADER_BYTES: 431 and the connection is closed. Headers not complete HEADER_TIMEOUT seconds after the
request's first byte (or after the connection opened): the connection is closed without an answer, which is
what a slowloris client gets from nginx too.

At the cap (uvicorn's `limit_concurrency`, our --max-connections), uvicorn answers 503 to every request, /ping
included, however many of the open connections are only waiting: 1,000 sockets that never send a byte lock
every caller out until the header timeout closes them, and the attacker reconnects. So a connection is
"waiting" from the moment it opens, or its last answer was sent, until its next request's headers are complete
(nothing sent yet, idle keep-alive, or headers still arriving); when a new connection finds the cap reached, the
oldest waiting connections are closed to make room. A connection whose request is being served is never
closed for room: with every connection busy, new requests still get 503. The waiting connections are an
insertion-ordered dict shared by the server's protocols: two dict operations per request.

The cap must fit under the process's open-file limit, or accept() fails (EMFILE) and uvloop closes new
connections unanswered, idle or not. `fit_open_files` raises the soft limit as far as the cap needs (up to the
hard limit) and otherwise lowers the cap to what fits.
"""

from __future__ import annotations

import json
import resource
from collections import OrderedDict

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol, RequestResponseCycle

from .errors import HeadersTooLarge

MAX_HEADER_BYTES = 64 * 1024  # the request line and every header, together
HEADER_TIMEOUT = 10.0
FILES_KEPT = 64  # open files left for everything but client connections: sockets, logs, the model's own files


def too_large_body(owner: str) -> bytes:
    return json.dumps({"error": HeadersTooLarge.kind, "message": f"the request line and headers are larger than the "
                       f"{owner}'s limit of {MAX_HEADER_BYTES} bytes"}).encode()


DRAIN_IDLE = 1.0  # seconds an idle keep-alive connection gets, at shutdown, to send its next request
_servers: dict = {}  # this process's uvicorn server states (one per server), for shed


def shed() -> int:
    """Every other open connection is told to close after its answer (`connection: close`): the one in progress,
    else the next. Its client reconnects, and the kernel may hand the new connection to another process on the
    same socket. An autoscaled group's workers do this once a worker is added (runtime/autoscaler.py); otherwise
    keep-alive clients stay on the workers they met first and the new one idles. Nothing is closed under a client:
    a call sent on an idle connection as it was shut would fail."""
    count = 0
    for state in list(_servers):
        for protocol in sorted(state.connections, key=id)[::2]:
            cycle = getattr(protocol, "cycle", None)
            if cycle is not None and not cycle.response_complete:
                cycle.keep_alive = False
            else:
                protocol._shed = True
            count += 1
    return count


class GuardedProtocol(HttpToolsProtocol):
    header_timeout = HEADER_TIMEOUT
    _draining = False
    _shed = False  # its next answer closes it (shed)
    _drain_timer = None
    max_header_bytes = MAX_HEADER_BYTES
    too_large_answer = too_large_body("endpoint")  # the control plane says its own name

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._header_bytes = 0
        self._section_bytes = 0  # bytes of reads that came whole while the headers were incomplete
        self._begun = False  # a message began in the read being parsed
        self._chunk = 0
        self._too_large = False
        self._in_headers = True  # from the connection's opening: a connection that sends nothing is timed too
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)
        waiting = getattr(self.server_state, "waiting", None)
        if waiting is None:  # one per server: every protocol of this uvicorn.Server shares it
            waiting = self.server_state.waiting = OrderedDict()
            _servers[self.server_state] = None
        self._waiting = waiting
        if self.limit_concurrency is not None and len(self.connections) >= self.limit_concurrency:
            self._make_room()
        waiting[self] = None

    def _make_room(self) -> None:
        # uvicorn refuses a request while len(connections) >= the cap, counting the caller's own connection.
        waiting, connections = self._waiting, self.connections
        while len(connections) >= self.limit_concurrency and waiting:
            oldest, _ = waiting.popitem(last=False)
            connections.discard(oldest)  # its connection_lost comes on a later loop turn; the count cannot wait
            oldest.transport.close()

    def shutdown(self) -> None:
        """Graceful shutdown (a stop, or a switch to a new revision) without uvicorn's race: closing an idle
        keep-alive connection at once fails a client that is sending on it just then. An idle connection gets
        DRAIN_IDLE seconds to send its next request, which is answered with `Connection: close`; a call in
        flight is answered the same way; a connection that sends nothing is closed after that time."""
        self._draining = True
        if self.cycle is None or self.cycle.response_complete:
            self._drain_timer = self.loop.call_later(DRAIN_IDLE, self._close_if_idle)
        else:
            self.cycle.keep_alive = False

    def _close_if_idle(self) -> None:
        self._drain_timer = None
        if (self.cycle is None or self.cycle.response_complete) and not self.transport.is_closing():
            self.transport.close()

    def connection_lost(self, exc) -> None:
        if self._drain_timer is not None:
            self._drain_timer.cancel()
        self._cancel_header_timer()
        self._waiting.pop(self, None)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        within = self._in_headers  # all of this read is one header section's, unless a message begins in it
        self._chunk = len(data)
        self._begun = False
        super().data_received(data)
        if self._in_headers and not self.transport.is_closing():
            # Headers still incomplete once this data is parsed: the whole of it counts towards them (a bound; the
            # exact count is taken only when the bound passes the limit). The timer is armed only now: a request
            # whose headers came in one piece (nearly all) costs no timer at all.
            self._header_bytes += self._chunk
            self._section_bytes = self._section_bytes + self._chunk if within and not self._begun else 0
            # The exact count sees complete headers only: one header value that never ends is caught by the
            # section's own bytes, at twice the limit (the parser holds it whole until it ends).
            if self._header_bytes > self.max_header_bytes and (self._section_bytes > 2 * self.max_header_bytes
                                                               or self._exact_header_bytes() > self.max_header_bytes):
                self._too_large = True
                self.send_400_response("headers too large")
            elif self._header_timer is None:
                self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        self._section_bytes = 0
        self._begun = True
        self._in_headers = True

    def _exact_header_bytes(self) -> int:
        # The request line's target and every complete header, as counted before: a few hundred bytes per request
        # (nearly all) never get here, so no parser callback per header is overridden.
        return len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)

    def on_headers_complete(self) -> None:
        self._in_headers = False
        if (self._header_bytes + self._chunk > self.max_header_bytes
                and self._exact_header_bytes() > self.max_header_bytes):
            self._refuse_headers()
        if self._header_timer is not None:
            self._cancel_header_timer()
        self._waiting.pop(self, None)
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle.__class__ is RequestResponseCycle:  # (not on an upgrade, which has none)
            cycle.__class__ = WholeCycle  # uvicorn builds its own cycle; WholeCycle only adds a method to it
        if (self._draining or self._shed) and self.cycle is not None:  # its answer says Connection: close, then
            self.cycle.keep_alive = False                                # it is closed
            self._shed = False

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.pipeline and not self.transport.is_closing():  # idle keep-alive until the next request
            self._waiting[self] = None

    def _refuse_headers(self) -> None:
        self._too_large = True
        raise ValueError("headers too large")  # stops the parser; data_received then calls send_400_response

    def send_400_response(self, msg: str) -> None:
        if not self._too_large:
            return super().send_400_response(msg)
        self._cancel_header_timer()
        head = (
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
            b"content-length: " + str(len(self.too_large_answer)).encode() + b"\r\nconnection: close\r\n\r\n"
        )
        self.transport.write(head + self.too_large_answer)
        self.transport.close()

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None


class WholeCycle(RequestResponseCycle):
    """uvicorn's request cycle with one more way to answer: a whole answer (head and body known) in one call and one
    write. uvicorn's ASGI send takes two awaited messages, and checks every header against two patterns and
    lower-cases it, the server's own date and server headers included, on every answer: about a fifth of a small
    JSON call's whole cost. The endpoint runtime finds `send_whole` on its ASGI send's owner (replies.Reply) and
    falls back to the ASGI send where there is none (under Ray Serve) or it declines."""

    def send_whole(self, status: int, head: bytes, body: bytes) -> bool:
        """Answer with `head`, the answer's header lines (each ending in CRLF, lower-case names, values the caller
        made or checked), and the whole `body`. False, with nothing sent, where uvicorn's send must do it: an
        answer already started, writes paused for a slow reader (its send waits), uvicorn's access log on."""
        if self.response_started or self.flow.write_paused or self.access_log:
            return False
        self.response_started = self.response_complete = True
        if self.disconnected:  # as uvicorn's send: the answer is dropped
            return True
        self.waiting_for_100_continue = False
        content = [STATUS_LINE[status], _default_head(self.default_headers), head]
        if not self.keep_alive:
            content.append(b"connection: close\r\n")
        content.append(b"\r\n")
        if self.scope["method"] != "HEAD":  # HEAD keeps the content-length, without the body
            content.append(body)
        self.transport.write(b"".join(content))
        self.message_event.set()
        if not self.keep_alive:
            self.transport.close()
        self.on_response()
        return True


_default: tuple[list, bytes] = ([], b"")  # the server's default headers (date, server) and their lines


def _default_head(headers: list) -> bytes:
    # The server state swaps in a new list when the date changes (once a second): the lines are joined once per list.
    global _default
    if headers is not _default[0]:
        _default = (headers, b"".join(b"%s: %s\r\n" % (name.lower(), value) for name, value in headers))
    return _default[1]


def fit_open_files(cap: int) -> tuple[int, str | None]:
    """The connection cap this process can hold open: the soft open-file limit is raised (as far as the hard limit
    allows) to the cap plus FILES_KEPT; if that is not enough, the cap is lowered. Returns (cap, a line saying it
    was lowered or None)."""
    needed = cap + FILES_KEPT
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return cap, None
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    except (ValueError, OSError):
        pass
    if soft >= needed:
        return cap, None
    fitted = max(1, soft - FILES_KEPT)
    return fitted, (f"--max-connections {cap} lowered to {fitted}: this process may open {soft} files "
                    f"(ulimit -n; {FILES_KEPT} kept for the rest)")
