"""The only module that sends requests to the Kubernetes API (the watches of
controller/informer.py stream from the endpoint `Kube.endpoint` describes). Everything is a
plain dict; API errors become kopf errors: 404 on get -> None, 409 on create -> the existing
object (idempotent), 400/403/422 -> `Refused` (a `kopf.PermanentError`: sending the same
request again cannot help), anything else -> `kopf.TemporaryError` (kopf retries with
backoff).

Every write the API server refuses, or that fails (5xx, network), is one WARNING line naming
the verb, the object and the server's message (never a request body: no Secret data);
404 and 409, which callers handle as normal flow, are not.

Children are written through one function, `Kube.apply`: server-side apply (a PATCH of type
`application/apply-patch+yaml`, field manager `kubeloop`, `force=true`) for every kind, except
the kinds created once and never changed (`CREATE_ONCE`: Jobs, whose pod template is immutable),
which are created if absent. See `Kube.apply`.

A refused write is remembered: the same body for the same object is not sent again until its
backoff has passed (30 s, doubling up to 10 min); the remembered `Refused` is raised instead.
Controllers re-apply their children on every resync (level-triggered), and this keeps them
from re-POSTing a child the API server keeps refusing; a changed body (a fixed spec) goes at
once.
"""

from __future__ import annotations

import builtins
import copy
import hashlib
import http.client
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import kopf
import kubernetes

from kubeloop.controller.cache import Cache
from kubeloop.controller.transport import Endpoint, Transport, endpoint_of

__all__ = [
    "APPLIED_ANNOTATION",
    "CREATE_ONCE",
    "FIELD_MANAGER",
    "PLURALS",
    "Endpoint",
    "Kube",
    "Refused",
    "applied_config",
    "client_of",
    "connect",
    "holds",
]

# (connect, read) seconds for a request that names none: without it one that is never answered
# (a half-open connection, a stalled apiserver) held its reconcile thread, and every later
# reconcile of that object coalesced into it, for good. A read timeout is a TemporaryError.
REQUEST_TIMEOUT = (10.0, 60.0)

# kind -> (API prefix, plural)
PLURALS: dict[str, tuple[str, str]] = {
    "TrainingPipeline": ("/apis/kubeloop.io/v1alpha1", "trainingpipelines"),
    "ModelDeployment": ("/apis/kubeloop.io/v1alpha1", "modeldeployments"),
    "DriftMonitor": ("/apis/kubeloop.io/v1alpha1", "driftmonitors"),
    "Job": ("/apis/batch/v1", "jobs"),
    "CronJob": ("/apis/batch/v1", "cronjobs"),
    "Pod": ("/api/v1", "pods"),
    "Event": ("/api/v1", "events"),
    "Service": ("/api/v1", "services"),
    "Deployment": ("/apis/apps/v1", "deployments"),
    "HorizontalPodAutoscaler": ("/apis/autoscaling/v2", "horizontalpodautoscalers"),
    "NetworkPolicy": ("/apis/networking.k8s.io/v1", "networkpolicies"),
    "Lease": ("/apis/coordination.k8s.io/v1", "leases"),
}
log = logging.getLogger("kubeloop.kube")
_PERMANENT = {400, 403, 422}
_MERGE = "application/merge-patch+json"
_APPLY = "application/apply-patch+yaml"
FIELD_MANAGER = "kubeloop"
# A digest of the last configuration applied: lets `apply` skip a request that would change
# nothing (the stored object, which the API server fills with defaults, cannot tell that alone:
# a field the configuration dropped is still there until the apply removes it).
APPLIED_ANNOTATION = "kubeloop.io/applied"
# Created once under a deterministic name and never changed: a Job's pod template is immutable,
# and a run's Job must run the template it was created with (a newer operator's build of it
# would be refused, or would be another run).
CREATE_ONCE = frozenset({"Job"})
_VERBS = {"GET": "get", "POST": "create", "PATCH": "patch", "PUT": "replace", "DELETE": "delete"}
FIRST_BACKOFF_SECONDS = 30.0
MAX_BACKOFF_SECONDS = 600.0


class Refused(kopf.PermanentError):
    """The API server refused a request: 400 Bad Request, 403 Forbidden or 422 Invalid.

    `message` is the server's own sentence, which names the field of a 422 (`Job.batch "x" is
    invalid: spec.template.spec...: Invalid value: ...`); `fields` are the fields its Status
    lists in `details.causes`.
    """

    def __init__(self, verb: str, kind: str, name: str, status: int, detail: Any) -> None:
        body: dict[str, Any] = detail if isinstance(detail, dict) else {}
        details = body.get("details")
        causes = details.get("causes") if isinstance(details, dict) else None
        causes = causes if isinstance(causes, list) else []
        self.verb, self.kind, self.name, self.status = verb, kind, name, status
        self.reason = str(body.get("reason") or "")
        self.message = str(body.get("message") or f"{status} {self.reason}".strip())
        self.fields = [str(c["field"]) for c in causes if isinstance(c, dict) and c.get("field")]
        super().__init__(self.summary)

    @property
    def summary(self) -> str:
        """One sentence for a condition, an Event and the log."""
        return (
            f"the API server refused to {self.verb} {self.kind} {self.name} "
            f"({self.status} {self.reason or 'refused'}): {self.message}"
        )


@dataclass
class _Refusal:
    """A refused write: its body's digest, the error, and when the same body may go again."""

    digest: str
    error: Refused
    retry_at: float
    backoff: float


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


def _status_body(exc: kubernetes.client.ApiException) -> Any:
    try:
        return json.loads(exc.body or "")
    except (TypeError, ValueError):
        return {"reason": exc.reason}


def _digest(body: Any) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def applied_config(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The configuration `Kube.apply` sends: the manifest with `APPLIED_ANNOTATION` set to a
    digest of everything else in it."""
    config = copy.deepcopy(dict(manifest))
    meta = config.setdefault("metadata", {})
    annotations = meta.setdefault("annotations", {})
    annotations.pop(APPLIED_ANNOTATION, None)
    annotations[APPLIED_ANNOTATION] = _digest(config)[:16]
    return config


def _subset(want: Any, have: Any) -> bool:
    """Whether `have` holds everything in `want` (fields the server added are allowed)."""
    if isinstance(want, dict):
        return isinstance(have, dict) and all(_subset(v, have.get(k)) for k, v in want.items())
    if isinstance(want, list):
        return (
            isinstance(have, list)
            and len(want) == len(have)
            and all(_subset(w, h) for w, h in zip(want, have, strict=True))
        )
    return bool(want == have)


def holds(observed: Mapping[str, Any], config: Mapping[str, Any]) -> bool:
    """Whether applying `config` (from `applied_config`) to `observed` would change nothing:
    the last configuration applied was this one (no field to remove) and every field of it
    still has its value (nobody changed one since)."""
    want = {k: v for k, v in config.items() if k not in ("apiVersion", "kind", "metadata")}
    meta = config.get("metadata") or {}
    want["metadata"] = {
        k: meta[k] for k in ("labels", "annotations", "ownerReferences") if k in meta
    }
    return _subset(want, observed)


def _log_write(  # noqa: PLR0917 (the parts of one log line)
    verb: str, kind: str, namespace: str, name: str, outcome: str, message: str
) -> None:
    """One WARNING line for a write the API server refused or that failed, with the object."""
    log.warning(
        "%s %s %s/%s %s: %s",  # e.g. create Job ml/churn-run-1 refused (422 Invalid): ...
        verb,
        kind,
        namespace,
        name,
        outcome,
        message,
        extra={"object": {"kind": kind, "namespace": namespace, "name": name}, "verb": verb},
    )


class Kube:
    """A thin dict-in/dict-out client over the operator's transport (thread-safe)."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport
        self._refusals: dict[tuple[str, str], _Refusal] = {}
        self._guard = threading.Lock()
        # Leader election (controller/leader.py): while this says False, no write is sent.
        self.fence: Callable[[], bool] | None = None
        # Watch-fed objects (controller/cache.py): reads of a watched slice are answered from
        # here, and every object a write returns goes into it.
        self.cache = Cache()

    def _call(  # noqa: PLR0917 (the parts of one HTTP request)
        self,
        method: str,
        kind: str,
        namespace: str,
        name: str | None = None,
        sub: str | None = None,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
        timeout: float | None = None,
    ) -> Any:
        path = _path(kind, namespace, name, sub)
        # A create names its object in the body; a refusal is remembered per verb and object.
        meta = body.get("metadata") if isinstance(body, dict) else None
        target = name or str((meta or {}).get("name", ""))
        write = method in ("POST", "PUT", "PATCH")
        key = (method, _path(kind, namespace, target, sub))
        if write:
            self._held_back(key, body)
        if method != "GET" and self.fence is not None and not self.fence():
            raise kopf.TemporaryError(
                f"{method} {path}: not sent, this operator no longer holds the leader lease",
                delay=2,
            )
        try:
            result = self._transport.send(
                method,
                path,
                query=query or [],
                body=body,
                content_type=content_type,
                timeout=timeout if timeout is not None else REQUEST_TIMEOUT,
            )
        except kubernetes.client.ApiException as exc:
            if exc.status in (404, 409):
                raise
            verb = _VERBS.get(method, method.lower())
            detail = _status_body(exc)
            if exc.status not in _PERMANENT:
                if method != "GET":
                    message = detail.get("message") if isinstance(detail, dict) else None
                    outcome = f"failed ({exc.status} {exc.reason})"
                    _log_write(verb, kind, namespace, target, outcome, str(message or exc.reason))
                raise kopf.TemporaryError(
                    f"{method} {path}: {exc.status} {exc.reason}", delay=2
                ) from exc
            refused = Refused(verb, kind, target, exc.status, detail)
            if method != "GET":
                outcome = f"refused ({refused.status} {refused.reason or 'refused'})"
                message = refused.message
                if write:
                    backoff = self._remember(key, _digest(body), refused)
                    message += f"; the same request waits {backoff:.0f} s before it is sent again"
                _log_write(verb, kind, namespace, target, outcome, message)
            raise refused from exc
        # No answer (refused, reset, timed out), a broken one, or one that is not JSON.
        except (OSError, http.client.HTTPException, ValueError) as exc:
            if method != "GET":
                verb = _VERBS.get(method, method.lower())
                _log_write(verb, kind, namespace, target, "failed", str(exc))
            raise kopf.TemporaryError(f"{method} {path}: {exc}", delay=2) from exc
        if write:
            with self._guard:
                self._refusals.pop(key, None)
        if method != "DELETE" and isinstance(result, dict) and result.get("metadata"):
            self.cache.observed(result)  # the server's answer is the newest version we know
        return result

    def endpoint(self) -> Endpoint:
        """This client's server, TLS and credentials, for a client of another kind (aiohttp)."""
        return self._transport.endpoint

    def _held_back(self, key: tuple[str, str], body: Any) -> None:
        """Raise the remembered refusal of this very body while its backoff lasts (the body's
        digest is taken only when this request was refused before: most never are)."""
        with self._guard:
            refusal = self._refusals.get(key)
        if refusal and time.monotonic() < refusal.retry_at and refusal.digest == _digest(body):
            raise refusal.error.with_traceback(None)  # tracebacks must not pile up on it

    def _remember(self, key: tuple[str, str], digest: str, error: Refused) -> float:
        """Hold this body back; returns for how long (seconds)."""
        with self._guard:
            last = self._refusals.get(key)
            backoff = FIRST_BACKOFF_SECONDS
            if last is not None and last.digest == digest:
                backoff = min(last.backoff * 2, MAX_BACKOFF_SECONDS)
            self._refusals[key] = _Refusal(digest, error, time.monotonic() + backoff, backoff)
        return backoff

    def get(
        self,
        kind: str,
        namespace: str,
        name: str,
        timeout: float | None = None,
        *,
        within: Mapping[str, str] | None = None,
        fresh: bool = False,
    ) -> dict[str, Any] | None:
        """The object, or None when it does not exist. From the cache when it watches the
        kind, or the slice the object is `within` (labels it carries if it exists), unless
        `fresh`."""
        if not fresh and self.cache.covers(kind, within):
            found_cached = self.cache.get(kind, namespace, name)
            if found_cached is None or not within:
                return found_cached
            labels = found_cached["metadata"].get("labels") or {}
            return found_cached if within.items() <= labels.items() else None
        try:
            found: dict[str, Any] = self._call("GET", kind, namespace, name, timeout=timeout)
        except kubernetes.client.ApiException as exc:
            if exc.status == 404:
                return None
            raise kopf.TemporaryError(f"get {kind} {name}: {exc.status}", delay=2) from exc
        return found

    def list(
        self, kind: str, namespace: str, labels: dict[str, str] | None = None, fresh: bool = False
    ) -> list[dict[str, Any]]:
        """Objects in a namespace, filtered by labels (on the server, and again here); from
        the cache when the labels name a watched slice, unless `fresh`."""
        if not fresh and self.cache.covers(kind, labels):
            return self.cache.list(kind, namespace, labels)
        items = self._list(kind, namespace, _selector(labels) if labels else None)["items"]
        want = (labels or {}).items()
        return [i for i in items if want <= (i.get("metadata", {}).get("labels") or {}).items()]

    def relist(self, kind: str, namespace: str, label: str | None) -> builtins.list[str]:
        """List one cached slice (`kind`, the objects with `label` or all) in `namespace` from
        the API and make the cache agree: what the list holds is observed, what it no longer
        holds is dropped (deleted during a watch gap). The names dropped."""
        result = self._list(kind, namespace, label)  # a bare key: the objects that carry it
        items: builtins.list[dict[str, Any]] = result["items"]
        listed_at = str((result.get("metadata") or {}).get("resourceVersion") or "")
        present = [str((i.get("metadata") or {}).get("name")) for i in items]
        version = int(listed_at) if listed_at.isdigit() else None
        dropped = self.cache.prune(kind, namespace, label, present, version)
        return [str(body["metadata"]["name"]) for body in dropped]

    def _list(self, kind: str, namespace: str, selector: str | None) -> dict[str, Any]:
        """GET the list (its `items` always present), every item observed by the cache."""
        query = [("labelSelector", selector)] if selector else []
        try:
            result: dict[str, Any] = self._call("GET", kind, namespace, query=query)
        except kubernetes.client.ApiException as exc:
            raise kopf.TemporaryError(f"list {kind}: {exc.status}", delay=2) from exc
        result["items"] = result.get("items") or []
        for item in result["items"]:  # a list's items name no kind
            self.cache.observed({"kind": kind, **item})
        return result

    def apply(
        self,
        manifest: dict[str, Any],
        observed: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Create or update a child to `manifest`: the one way the controllers write children.

        Server-side apply with field manager `kubeloop` and `force=true`: the fields the
        manifest sets take these values (taken over from any other manager), fields an earlier
        apply set and this manifest leaves out are removed, fields others set (defaults, a
        person's labels) stay. Returns the stored object.

        `observed`: the child as last seen (a GET or a cache), when the caller has it; when it
        already holds the manifest (`holds`) no request is sent, so a resync that changes
        nothing costs nothing here.

        Kinds in `CREATE_ONCE` (Jobs) are created if absent and never updated: an `observed`
        one is returned as it is; otherwise it is created (field manager `kubeloop`), and one
        that exists already under that name (a retried create) is returned unchanged.
        """
        kind, meta = manifest["kind"], manifest["metadata"]
        if kind in CREATE_ONCE:
            return observed if observed is not None else self.create(manifest, timeout)
        config = applied_config(manifest)
        if observed is not None and holds(observed, config):
            return observed
        query = [("fieldManager", FIELD_MANAGER), ("force", "true")]
        try:
            applied: dict[str, Any] = self._call(
                "PATCH",
                kind,
                meta["namespace"],
                meta["name"],
                body=config,
                query=query,
                content_type=_APPLY,
                timeout=timeout,
            )
        except kubernetes.client.ApiException as exc:  # 404 namespace gone, 409 a racing create
            raise kopf.TemporaryError(
                f"apply {kind} {meta['name']}: {exc.status}", delay=2
            ) from exc
        return applied

    def create(self, manifest: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """Create, or return the existing object of that name (deterministic names)."""
        meta = manifest["metadata"]
        try:
            created: dict[str, Any] = self._call(
                "POST",
                manifest["kind"],
                meta["namespace"],
                body=manifest,
                query=[("fieldManager", FIELD_MANAGER)],
                timeout=timeout,
            )
        except kubernetes.client.ApiException as exc:
            name = meta.get("name")
            if exc.status != 409 or not name:
                # A 409 for an object named by the server (generateName: an Event) names no
                # object to read back: the POST goes again (it read meta['name'], a KeyError).
                what = name or f"{meta.get('generateName', '')}*"
                raise kopf.TemporaryError(f"create {what}: {exc.status}", delay=2) from exc
            existing = self.get(manifest["kind"], meta["namespace"], name, fresh=True)
            if existing is None:  # deleted in between: let kopf retry
                raise kopf.TemporaryError(f"{name} is being deleted", delay=2) from exc
            return existing
        return created

    def replace(
        self, manifest: dict[str, Any], timeout: float | None = None
    ) -> dict[str, Any] | None:
        """Update (PUT) an object as a whole, on the condition that it is still at
        `metadata.resourceVersion`; None when it changed since (409) or is gone (404)."""
        meta = manifest["metadata"]
        kind, namespace, name = manifest["kind"], meta["namespace"], meta["name"]
        try:
            stored: dict[str, Any] = self._call(
                "PUT", kind, namespace, name, body=manifest, timeout=timeout
            )
        except kubernetes.client.ApiException as exc:
            if exc.status in (404, 409):
                return None
            raise kopf.TemporaryError(f"replace {kind} {name}: {exc.status}", delay=2) from exc
        return stored

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
                "PATCH", kind, namespace, name, subresource, body=patch, content_type=_MERGE
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
            self._call("DELETE", kind, namespace, name, body=body)
        except kubernetes.client.ApiException as exc:
            if exc.status != 404:
                raise kopf.TemporaryError(f"delete {kind} {name}: {exc.status}", delay=2) from exc
        self.cache.forget(kind, namespace, name)


def connect(server: str | None = None) -> Kube:
    """A client for `server` (a plain URL, for the emulator), in-cluster config, or kubeconfig;
    each thread that sends through it keeps a connection of its own."""
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
    return client_of(config)


def client_of(config: kubernetes.client.Configuration) -> Kube:
    """A client for a loaded `kubernetes` client configuration."""
    return Kube(Transport(endpoint_of(config)))
