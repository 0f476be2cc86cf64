"""A small HTTP GET of a pod's own endpoint (`/progress`, `/metrics`) within a deadline.

The pod runs a team's image or a server under load: an answer that never comes, trickles in a
byte at a time, or never ends must not hold a reconcile. `urllib`'s timeout bounds each socket
operation, not the whole answer, so the body is read a socket read at a time (`read1`) and the
deadline is checked between reads. Standard library only.
"""

from __future__ import annotations

import ssl
import time
import urllib.error
import urllib.request

__all__ = ["read_bounded"]

_CHUNK = 64 << 10


def read_bounded(
    url: str, timeout: float, max_bytes: int, context: ssl.SSLContext | None = None
) -> bytes | None:
    """The body of a 200 answer to GET `url`, read within `timeout` seconds in all; None when
    the pod cannot be reached, answers anything else (204: nothing yet), sends more than
    `max_bytes` or is still sending at the deadline."""
    deadline = time.monotonic() + timeout
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            if response.status != 200:
                return None
            body = b""
            while chunk := response.read1(_CHUNK):
                body += chunk
                if len(body) > max_bytes or time.monotonic() > deadline:
                    return None
            return body
    except (OSError, urllib.error.URLError, ValueError):
        return None
