"""The one Kubernetes API call the SDK makes (a status patch), with the standard library only.

Where the API is: in a pod, the service account (`KUBERNETES_SERVICE_HOST`/`_PORT`, its token
and CA under /var/run/secrets/kubernetes.io/serviceaccount); elsewhere the current context of
`KUBECONFIG` (or ~/.kube/config). A kubeconfig is read as JSON; without a YAML parser (the SDK
has no dependencies), a YAML one is read only when it holds one cluster and one user, which
is what `kubeloop local` writes: for anything else, point KUBECONFIG at a JSON kubeconfig.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import ssl
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

__all__ = [
    "SERVICE_ACCOUNT",
    "ApiConfigError",
    "ApiEndpoint",
    "ApiError",
    "find_endpoint",
    "in_cluster_endpoint",
    "kubeconfig_endpoint",
    "parse_kubeconfig",
    "patch_status",
    "status_path",
]

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
GROUP, VERSION, PLURAL = "kubeloop.io", "v1alpha1", "trainingpipelines"
JSON_PATCH = "application/json-patch+json"
# the kubeconfig fields the SDK uses, in the cluster and the user entry
_CLUSTER_KEYS = ("server", "certificate-authority", "certificate-authority-data")
_USER_KEYS = (
    "token",
    "client-certificate",
    "client-certificate-data",
    "client-key",
    "client-key-data",
)
_FLAG_KEYS = ("insecure-skip-tls-verify",)


class ApiConfigError(RuntimeError):
    """No way to reach the API server: no service account and no usable kubeconfig."""


class ApiError(RuntimeError):
    """A non-2xx answer of the API server."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


@dataclass(frozen=True)
class ApiEndpoint:
    """Where the API server is and how to authenticate to it."""

    server: str
    token: str | None = None
    token_file: Path | None = None  # read per request: projected tokens rotate
    tls: ssl.SSLContext | None = None

    def headers(self) -> dict[str, str]:
        """The Authorization header, if any."""
        token = self.token
        if self.token_file is not None:
            token = self.token_file.read_text(encoding="utf-8").strip()
        return {"Authorization": f"Bearer {token}"} if token else {}


def in_cluster_endpoint(
    env: Mapping[str, str] | None = None, account: Path = SERVICE_ACCOUNT
) -> ApiEndpoint | None:
    """The API as a pod sees it, or None outside a pod (or with no token mounted)."""
    env = os.environ if env is None else env
    host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
    token = account / "token"
    if not host or not port or not token.is_file():
        return None
    if ":" in host:  # IPv6
        host = f"[{host}]"
    ca = account / "ca.crt"
    tls = ssl.create_default_context(cafile=str(ca) if ca.is_file() else None)
    return ApiEndpoint(f"https://{host}:{port}", token_file=token, tls=tls)


def parse_kubeconfig(text: str, source: str = "kubeconfig") -> dict[str, str]:
    """The current context's cluster and user fields (server, token, certificates)."""
    try:
        config = json.loads(text)
    except ValueError:
        return _yaml_fields(text, source)
    if not isinstance(config, dict):
        raise ApiConfigError(f"{source}: a kubeconfig object, not {type(config).__name__}")

    def named(section: str, name: Any) -> dict[str, Any]:
        for entry in config.get(section) or []:
            if isinstance(entry, dict) and entry.get("name") == name:
                found = entry.get(section.rstrip("s"))
                return found if isinstance(found, dict) else {}
        return {}

    current = config.get("current-context")
    context = named("contexts", current)
    if not context:
        raise ApiConfigError(f"{source}: current-context {current!r} is not in its contexts")
    cluster, user = named("clusters", context.get("cluster")), named("users", context.get("user"))
    fields = {k: str(cluster[k]) for k in (*_CLUSTER_KEYS, *_FLAG_KEYS) if k in cluster}
    fields.update({k: str(user[k]) for k in _USER_KEYS if k in user})
    if "server" not in fields:
        raise ApiConfigError(f"{source}: cluster {context.get('cluster')!r} has no server")
    return fields


def _yaml_fields(text: str, source: str) -> dict[str, str]:
    """`key: value` lines of a one-cluster, one-user YAML kubeconfig."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().removeprefix("- ").partition(":")
        if sep and key in (*_CLUSTER_KEYS, *_USER_KEYS, *_FLAG_KEYS):
            found.setdefault(key, []).append(value.strip().strip("'\""))
    if len(found.get("server", [])) != 1:
        raise ApiConfigError(
            f"{source}: a YAML kubeconfig with {len(found.get('server', []))} clusters; without "
            "a YAML parser the SDK reads one: set KUBECONFIG to a JSON kubeconfig "
            "(kubectl config view --minify --flatten -o json > kubeconfig.json)"
        )
    twice = sorted(k for k, v in found.items() if len(v) > 1)
    if twice:
        raise ApiConfigError(
            f"{source}: a YAML kubeconfig with more than one {', '.join(twice)}; set KUBECONFIG "
            "to a JSON kubeconfig (kubectl config view --minify --flatten -o json)"
        )
    return {k: v[0] for k, v in found.items()}


def kubeconfig_endpoint(path: Path) -> ApiEndpoint:
    """The endpoint of a kubeconfig's current context."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ApiConfigError(f"cannot read the kubeconfig {path}: {exc.strerror}") from exc
    fields = parse_kubeconfig(text, str(path))
    server = fields["server"].rstrip("/")
    tls = None
    if server.startswith("https:"):
        tls = _tls(fields, path.parent)
    return ApiEndpoint(server, token=fields.get("token") or None, tls=tls)


def _tls(fields: Mapping[str, str], base: Path) -> ssl.SSLContext:
    def file(key: str) -> str:
        return str(base / fields[key])  # relative paths are the kubeconfig's own

    if fields.get("insecure-skip-tls-verify", "").lower() == "true":
        tls = ssl.create_default_context()
        tls.check_hostname = False
        tls.verify_mode = ssl.CERT_NONE
    elif "certificate-authority-data" in fields:
        ca = base64.b64decode(fields["certificate-authority-data"]).decode("ascii")
        tls = ssl.create_default_context(cadata=ca)
    elif "certificate-authority" in fields:
        tls = ssl.create_default_context(cafile=file("certificate-authority"))
    else:
        tls = ssl.create_default_context()
    if "client-certificate-data" in fields and "client-key-data" in fields:
        # load_cert_chain takes files only: write them where only we can read, then drop them
        with tempfile.TemporaryDirectory() as folder:
            cert, key = Path(folder) / "cert.pem", Path(folder) / "key.pem"
            cert.write_bytes(base64.b64decode(fields["client-certificate-data"]))
            key.write_bytes(base64.b64decode(fields["client-key-data"]))
            tls.load_cert_chain(str(cert), str(key))
    elif "client-certificate" in fields and "client-key" in fields:
        tls.load_cert_chain(file("client-certificate"), file("client-key"))
    return tls


def find_endpoint(env: Mapping[str, str] | None = None) -> ApiEndpoint:
    """In-cluster config, else KUBECONFIG (its first file), else ~/.kube/config."""
    env = os.environ if env is None else env
    found = in_cluster_endpoint(env)
    if found is not None:
        return found
    configured = env.get("KUBECONFIG", "").split(os.pathsep)[0]
    path = Path(configured) if configured else Path.home() / ".kube" / "config"
    if not path.is_file():
        raise ApiConfigError(
            "no Kubernetes API to report to: not in a pod (KUBERNETES_SERVICE_HOST unset) and "
            f"no kubeconfig at {path} (set KUBECONFIG)"
        )
    return kubeconfig_endpoint(path)


def status_path(namespace: str, name: str) -> str:
    """The status subresource of a TrainingPipeline."""
    return (
        f"/apis/{GROUP}/{VERSION}/namespaces/{quote(namespace, safe='')}/"
        f"{PLURAL}/{quote(name, safe='')}/status"
    )


def patch_status(
    endpoint: ApiEndpoint,
    namespace: str,
    name: str,
    body: list[dict[str, Any]],
    timeout: float = 10.0,
) -> None:
    """JSON-patch the TrainingPipeline's status; raises ApiError on a refusal."""
    request = urllib.request.Request(
        endpoint.server + status_path(namespace, name),
        data=json.dumps(body).encode("utf-8"),
        method="PATCH",
        headers={"Content-Type": JSON_PATCH, "Accept": "application/json", **endpoint.headers()},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=endpoint.tls) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        text = exc.read().decode("utf-8", "replace")
        with contextlib.suppress(ValueError, AttributeError):  # not a Status object
            text = str(json.loads(text).get("message", text))
        raise ApiError(exc.code, text[:500]) from None
