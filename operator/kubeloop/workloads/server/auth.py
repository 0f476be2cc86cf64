"""Bearer-token auth in front of the V2 app, on when the server is given a token.

Every route needs `Authorization: Bearer <token>` except the ones the cluster reads without
one: `/v2/health/live` and `/v2/health/ready` (kubelet probes), `/metrics` (Prometheus and the
operator's canary analysis). A missing and a wrong token both get 401 with a
`WWW-Authenticate: Bearer` challenge (RFC 6750) and the V2 `{"error": ...}` body.
"""

from __future__ import annotations

import enum
import hmac
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

__all__ = ["OPEN_PATHS", "REFUSALS", "BearerAuth", "Verdict", "check"]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

# Exact paths only: a prefix match would open `/metrics/../v2/...` to whatever routes it.
OPEN_PATHS = frozenset({"/v2/health/live", "/v2/health/ready", "/metrics"})


class Verdict(enum.Enum):
    """What the auth check decided for one request."""

    OPEN = "open"  # a path that needs no token
    ALLOWED = "allowed"  # the right token
    MISSING = "missing"  # no bearer credentials
    INVALID = "invalid"  # a bearer token, but not this server's


def check(path: str, authorization: bytes | None, token: bytes) -> Verdict:
    """Decide one request from its path and `Authorization` header value.

    The token is compared in constant time (`hmac.compare_digest`), so the answer's timing does
    not tell how many leading bytes of a guess were right.
    """
    if path in OPEN_PATHS:
        return Verdict.OPEN
    if authorization is None:
        return Verdict.MISSING
    scheme, _, presented = authorization.strip().partition(b" ")
    if scheme.lower() != b"bearer" or not presented.strip():
        return Verdict.MISSING
    if hmac.compare_digest(presented.strip(), token):
        return Verdict.ALLOWED
    return Verdict.INVALID


_CHALLENGE = {
    Verdict.MISSING: b'Bearer realm="kubeloop"',
    Verdict.INVALID: b'Bearer realm="kubeloop", error="invalid_token"',
}
# Why a request was refused, for a REST body and a gRPC status message alike.
REFUSALS = {
    Verdict.MISSING: "this server needs a token: send the header (gRPC: metadata) "
    "authorization: Bearer <token>",
    Verdict.INVALID: "the bearer token is not valid for this server",
}
_BODY = {verdict: orjson.dumps({"error": text}) for verdict, text in REFUSALS.items()}


class BearerAuth:
    """ASGI middleware: answers 401 unless `check` lets the request through to `app`."""

    def __init__(self, app: Any, token: str, on_refused: Callable[[], None]) -> None:
        if not token:
            raise ValueError("auth token is empty: leave auth off instead")
        self._app = app
        self._token = token.encode()
        self._expected = b"Bearer " + self._token
        self._on_refused = on_refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS:
            header = None
            for key, value in scope["headers"]:
                if key == b"authorization":
                    header = value
                    break
            # The usual header, byte for byte, costs one comparison; `check` decides the rest.
            if header is None or not hmac.compare_digest(header, self._expected):
                verdict = check(scope["path"], header, self._token)
                if verdict in _BODY:
                    self._on_refused()
                    await _refuse(send, verdict)
                    return
        await self._app(scope, receive, send)


async def _refuse(send: Send, verdict: Verdict) -> None:
    body = _BODY[verdict]
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", _CHALLENGE[verdict]),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
