"""The only module that talks to the Kubernetes API. Everything is a plain dict; API errors
become kopf errors: 404 on get -> None, 409 on create -> the existing object (idempotent),
422/400/403 -> `kopf.PermanentError` (retrying cannot help), anything else ->
`kopf.TemporaryError` (kopf retries with backoff)."""

from __future__ import annotations

import os
from typing import Any

import kopf
import kubernetes

__all__ = ["PLURALS", "Kube", "connect"]

# kind -> (API prefix, plural)
PLURALS: dict[str, tuple[str, str]] = {
    "TrainingPipeline": ("/apis/kubeloop.io/v1alpha1", "trainingpipelines"),
    "ModelDeployment": ("/apis/kubeloop.io/v1alpha1", "modeldeployments"),
    "DriftMonitor": ("/apis/kubeloop.io/v1alpha1", "driftmonitors"),
    "Job": ("/apis/batch/v1", "jobs"),
    "CronJob": ("/apis/batch/v1", "cronjobs"),
    "Pod": ("/api/v1", "pods"),
    "Service": ("/api/v1", "services"),
    "ServiceAccount": ("/api/v1", "serviceaccounts"),
    "Deployment": ("/apis/apps/v1", "deployments"),
    "HorizontalPodAutoscaler": ("/apis/autoscaling/v2", "horizontalpodautoscalers"),
    "Role": ("/apis/rbac.authorization.k8s.io/v1", "roles"),
    "RoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "rolebindings"),
}
_PERMANENT = {400, 403, 422}
_MERGE = "application/merge-patch+json"


def _path(kind: str, namespace: str, name: str | None = None, sub: str | None = None) -> str:
    prefix, plural = PLURALS[kind]
    path = f"{prefix}/namespaces/{namespace}/{plural}"
    if name:
        path += f"/{name}"
    if sub:
        path += f"/{sub}"
    return path


def _selector(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


class Kube:
    """A thin dict-in/dict-out client over `kubernetes.client.ApiClient` (thread-safe)."""

    def __init__(self, api: Any) -> None:
        self._api = api

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        try:
            return self._api.call_api(
                path,
                method,
                query_params=query or [],
                header_params={"Content-Type": content_type, "Accept": "application/json"},
                body=body,
                response_types_map={200: "object", 201: "object", 202: "object"},
                auth_settings=["BearerToken"],
                _return_http_data_only=True,
                _preload_content=True,
            )
        except kubernetes.client.ApiException as exc:
            if exc.status in _PERMANENT:
                raise kopf.PermanentError(f"{method} {path}: {exc.status} {exc.reason}") from exc
            if exc.status in (404, 409):
                raise
            raise kopf.TemporaryError(
                f"{method} {path}: {exc.status} {exc.reason}", delay=2
            ) from exc
        except (OSError, kubernetes.client.exceptions.OpenApiException) as exc:
            raise kopf.TemporaryError(f"{method} {path}: {exc}", delay=2) from exc

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        try:
            found: dict[str, Any] = self._call("GET", _path(kind, namespace, name))
        except kubernetes.client.ApiException as exc:
            if exc.status == 404:
                return None
            raise kopf.TemporaryError(f"get {kind} {name}: {exc.status}", delay=2) from exc
        return found

    def list(
        self, kind: str, namespace: str, labels: dict[str, str] | None = None
    ) -> list[dict[str, Any]]:
        """Objects in a namespace, filtered by labels (on the server, and again here)."""
        query = [("labelSelector", _selector(labels))] if labels else []
        try:
            result = self._call("GET", _path(kind, namespace), query=query)
        except kubernetes.client.ApiException as exc:
            raise kopf.TemporaryError(f"list {kind}: {exc.status}", delay=2) from exc
        items: list[dict[str, Any]] = result.get("items") or []
        want = (labels or {}).items()
        return [i for i in items if want <= (i.get("metadata", {}).get("labels") or {}).items()]

    def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Create, or return the existing object of that name (deterministic names)."""
        meta = manifest["metadata"]
        try:
            created: dict[str, Any] = self._call(
                "POST", _path(manifest["kind"], meta["namespace"]), body=manifest
            )
        except kubernetes.client.ApiException as exc:
            if exc.status != 409:
                raise kopf.TemporaryError(f"create {meta['name']}: {exc.status}", delay=2) from exc
            existing = self.get(manifest["kind"], meta["namespace"], meta["name"])
            if existing is None:  # deleted in between: let kopf retry
                raise kopf.TemporaryError(f"{meta['name']} is being deleted", delay=2) from exc
            return existing
        return created

    def patch(
        self,
        kind: str,
        namespace: str,
        name: str,
        patch: dict[str, Any],
        subresource: str | None = None,
    ) -> dict[str, Any] | None:
        """Merge-patch an object (or its status); None when it does not exist."""
        try:
            patched: dict[str, Any] = self._call(
                "PATCH", _path(kind, namespace, name, subresource), body=patch, content_type=_MERGE
            )
        except kubernetes.client.ApiException as exc:
            if exc.status == 404:
                return None
            raise kopf.TemporaryError(f"patch {kind} {name}: {exc.status}", delay=2) from exc
        return patched

    def patch_status(
        self, kind: str, namespace: str, name: str, status: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Merge-patch `status` through the status subresource."""
        return self.patch(kind, namespace, name, {"status": status}, subresource="status")

    def delete(self, kind: str, namespace: str, name: str) -> None:
        """Delete (background propagation); a missing object is fine."""
        body = {"propagationPolicy": "Background"}
        try:
            self._call("DELETE", _path(kind, namespace, name), body=body)
        except kubernetes.client.ApiException as exc:
            if exc.status != 404:
                raise kopf.TemporaryError(f"delete {kind} {name}: {exc.status}", delay=2) from exc


def connect(server: str | None = None) -> Kube:
    """A client for `server` (a plain URL, for the emulator), in-cluster config, or kubeconfig."""
    config = kubernetes.client.Configuration()
    if server:
        config.host = server
    else:
        try:
            kubernetes.config.load_incluster_config(client_configuration=config)
        except kubernetes.config.ConfigException:
            kubernetes.config.load_kube_config(
                config_file=os.environ.get("KUBECONFIG"), client_configuration=config
            )
    return Kube(kubernetes.client.ApiClient(config))
