"""Connection limits uvicorn's httptools protocol does not have: a cap on header bytes and a header-read timeout.

uvicorn bounds idle keep-alive connections (`timeout_keep_alive`) and, with `limit_concurrency`, answers 503 past
a number of connections; but once a request's first byte arrives it waits for the rest of the headers forever
and takes headers of any size. So one client could hold a connection open by sending a header byte every few
seconds (slowloris), or make the endpoint buffer megabytes of headers. llhttp, under httptools, has no size
limit of its own, so the protocol counts as the parser calls back: the count costs an addition per header, and
the timer is armed once per request and cancelled when the headers are complete.

Past MAX_HEADER_BYTES: 431 and the connection is closed. Headers not complete HEADER_TIMEOUT seconds after the
request's first byte (or after the connection opened): the connection is closed without an answer, which is
what a slowloris client gets from nginx too.
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEADER_BYTES = 64 * 1024  # the request line and every header, together
HEADER_TIMEOUT = 10.0



def too_large_body(owner: str) -> bytes:
    return (f'{{"error":"headers_too_large","message":"the request line and headers are larger than the {owner}\'s '
            f'limit of {MAX_HEADER_BYTES} bytes"}}').encode()


class GuardedProtocol(HttpToolsProtocol):
    header_timeout = HEADER_TIMEOUT
    max_header_bytes = MAX_HEADER_BYTES
    too_large_answer = too_large_body("endpoint")  # the control plane says its own name

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._header_bytes = 0
        self._too_large = False
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def connection_lost(self, exc) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._cancel_header_timer()
        super().on_headers_complete()

    def _count(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > self.max_header_bytes:
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
