"""A deadline for a request's headers, which uvicorn does not have.

uvicorn times out an idle keep-alive connection, but not one that sends its request line and
headers a byte at a time (slowloris): each byte resets nothing, and the connection is held as
long as the client likes; enough of them exhaust file descriptors and memory. Like nginx's
`client_header_timeout` and Go's `ReadHeaderTimeout`, the headers of each request must arrive
within `header_timeout_s` of its first byte (of the connection, for the first request): a
client that is later gets `408 Request Timeout` and the connection is closed. The body is the
application's to bound (`max_request_bytes`).
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["REQUEST_TIMEOUT_408", "header_timeout_protocol"]

_BODY = b"the request headers did not arrive in time\n"
REQUEST_TIMEOUT_408 = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_BODY), _BODY)
)


def header_timeout_protocol(seconds: float) -> type[Any]:
    """uvicorn's httptools protocol with a header deadline of `seconds` (0: none)."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    if seconds <= 0:
        return HttpToolsProtocol

    class HeaderTimeoutProtocol(HttpToolsProtocol):
        _header_deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()  # a keep-alive connection's next request: its own deadline

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self._header_deadline is None:
                self._header_deadline = self.loop.call_later(seconds, self._headers_too_late)

        def _disarm(self) -> None:
            if self._header_deadline is not None:
                self._header_deadline.cancel()
                self._header_deadline = None

        def _headers_too_late(self) -> None:
            self._header_deadline = None
            if not self.transport.is_closing():
                self.transport.write(REQUEST_TIMEOUT_408)
                self.transport.close()

    return HeaderTimeoutProtocol
