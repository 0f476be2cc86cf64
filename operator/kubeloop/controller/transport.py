"""The operator's HTTP to the API server: JSON over HTTP/1.1 keep-alive connections, one per
thread (`http.client`), with the client configuration's server, TLS and credentials.

Why not the `kubernetes` client's ApiClient: per request it walks the body to sanitise it,
builds its parameters and headers, and goes through urllib3's pool manager (which parses the
URL again); in a burst of new pipelines that was a third of the operator's CPU, more than the
reconciles themselves (bench/operator_bench.py). The configuration is still loaded by the
`kubernetes` package (in-cluster, kubeconfig: exec plugins, client certificates, token files
that rotate), and its errors are still `kubernetes.client.ApiException`, so callers see the
same status, reason and body.

A kept-alive connection the server has closed meanwhile fails on its next request before an
answer: that request goes once more, on a new connection (a create sent twice meets its own
object: 409; a patch is the same patch).
"""

from __future__ import annotations

import http.client
import json
import ssl
import threading
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import kubernetes

from kubeloop import __version__

__all__ = ["USER_AGENT", "Endpoint", "Transport", "endpoint_of"]

Timeout = float | tuple[float, float]  # seconds: one for both, or (connect, read)
# In the API server's audit log and its default field manager (a create without one).
USER_AGENT = f"kubeloop-operator/{__version__}"


@dataclass(frozen=True)
class Endpoint:
    """Where and how to reach the API server: its URL, TLS settings and credentials."""

    server: str
    ssl: ssl.SSLContext | bool  # False: plain HTTP
    authorization: Callable[[], str | None]  # the header's value, read anew per request
    proxy: str | None = None  # an HTTP proxy's URL (kubeconfig's proxy-url), if any

    def headers(self) -> dict[str, str]:
        token = self.authorization()
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        return {**headers, **({"Authorization": token} if token else {})}


def endpoint_of(config: kubernetes.client.Configuration) -> Endpoint:
    """The endpoint a loaded `kubernetes` client configuration describes."""
    context: ssl.SSLContext | bool = False
    if config.host.startswith("https:"):
        context = ssl.create_default_context(cafile=config.ssl_ca_cert)
        if config.cert_file:
            context.load_cert_chain(config.cert_file, config.key_file)
        if config.assert_hostname is False or not config.verify_ssl:
            context.check_hostname = False
        if not config.verify_ssl:  # insecure-skip-tls-verify
            context.verify_mode = ssl.CERT_NONE

    def authorization() -> str | None:
        # The in-cluster loader's hook re-reads the projected token as it rotates; an exec
        # plugin's runs the plugin again once its token has expired.
        value = config.auth_settings().get("BearerToken", {}).get("value")
        return str(value) if value else None

    return Endpoint(config.host.rstrip("/"), context, authorization, config.proxy or None)


def _json_default(value: Any) -> Any:
    iso = getattr(value, "isoformat", None)
    return iso() if callable(iso) else str(value)


class Transport:
    """Requests to one API server; thread-safe (each thread has its own connection)."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        url = urllib.parse.urlsplit(endpoint.server)
        self._https = url.scheme == "https"
        self._host = url.hostname or "localhost"
        self._port = url.port or (443 if self._https else 80)
        self._base = url.path.rstrip("/")
        self._local = threading.local()

    def _new(self, connect_timeout: float) -> http.client.HTTPConnection:
        proxy = urllib.parse.urlsplit(self.endpoint.proxy) if self.endpoint.proxy else None
        host, port = (proxy.hostname or "", proxy.port or 80) if proxy else (self._host, self._port)
        connection: http.client.HTTPConnection
        context = self.endpoint.ssl
        if self._https and isinstance(context, ssl.SSLContext):
            connection = http.client.HTTPSConnection(
                host, port, timeout=connect_timeout, context=context
            )
        else:
            connection = http.client.HTTPConnection(host, port, timeout=connect_timeout)
        if proxy:
            connection.set_tunnel(self._host, self._port)
        connection.connect()
        return connection

    def send(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        body: Any = None,
        content_type: str = "application/json",
        timeout: Timeout = (10.0, 60.0),
    ) -> Any:
        """The decoded JSON answer (None when empty); `kubernetes.client.ApiException` for an
        answer of 400 or more, OSError or http.client.HTTPException when none came."""
        connect, read = timeout if isinstance(timeout, tuple) else (timeout, timeout)
        target = self._base + path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        data = None
        if body is not None:
            data = json.dumps(body, separators=(",", ":"), default=_json_default).encode()
        headers = {**self.endpoint.headers(), "Content-Type": content_type}
        for attempt in (1, 2):
            connection: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
            reused = connection is not None
            try:
                if connection is None:
                    connection = self._new(connect)
                    self._local.connection = connection
                assert connection.sock is not None
                connection.sock.settimeout(read)
                connection.request(method, target, body=data, headers=headers)
                response = connection.getresponse()
                answer = response.read()
            except (OSError, http.client.HTTPException) as failure:
                self._drop()
                # A kept-alive connection the server closed: once more on a new one. Not after
                # a timeout: the server may be working on it (and the wait would double).
                if reused and attempt == 1 and not isinstance(failure, TimeoutError):
                    continue
                raise
            if response.will_close:
                self._drop()
            break
        if response.status >= 400:
            error = kubernetes.client.ApiException(status=response.status, reason=response.reason)
            error.body = answer.decode("utf-8", "replace")
            error.headers = dict(response.getheaders())
            raise error
        return json.loads(answer) if answer else None

    def _drop(self) -> None:
        connection = getattr(self._local, "connection", None)
        self._local.connection = None
        if connection is not None:
            connection.close()
