"""uvicorn's HTTP protocol with a deadline on a request's headers and a bound on their size.

uvicorn (httptools) waits for a request's headers for ever, and takes them at any size: a client that
opens a connection and sends nothing, or a header line now and then (slowloris), holds the connection
for as long as it likes, and one that sends megabytes of headers has them held in memory. `make serve`
selects this protocol (`uvicorn --http gateway.server:HeaderGuardedProtocol`): from the moment a
connection opens, or a request's first byte arrives on a kept-alive one, its headers must be whole
within HEADER_READ_TIMEOUT_SECONDS (else 408) and within MAX_HEADER_BYTES (else 431); the connection is
then closed. The body has its own deadline, in the app (gateway.core.bodies).
"""

import asyncio

from django.conf import settings
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


def _refusal(status: bytes) -> bytes:
    return b"HTTP/1.1 " + status + b"\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class HeaderGuardedProtocol(HttpToolsProtocol):
    """HttpToolsProtocol whose request headers must arrive in time and within a size."""

    _header_timer: asyncio.TimerHandle | None = None
    _header_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._headers_expect()  # a connection that sends nothing at all is cut off too

    def connection_lost(self, exc: Exception | None) -> None:
        self._headers_done()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._header_timer is None:
            return
        # Still within a request's headers once the parser has taken this piece.
        self._header_bytes += len(data)
        if self._header_bytes > settings.MAX_HEADER_BYTES:
            self._refuse(b"431 Request Header Fields Too Large")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._headers_expect()

    def on_headers_complete(self) -> None:
        self._headers_done()
        super().on_headers_complete()

    def _headers_expect(self) -> None:
        if self._header_timer is None:
            self._header_bytes = 0
            self._header_timer = self.loop.call_later(
                settings.HEADER_READ_TIMEOUT_SECONDS, self._refuse, b"408 Request Timeout"
            )

    def _headers_done(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _refuse(self, status: bytes) -> None:
        self._headers_done()
        if self.transport.is_closing():
            return
        # Answer only when no earlier (pipelined) response is still being written on this connection.
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(_refusal(status))
        self.transport.close()
