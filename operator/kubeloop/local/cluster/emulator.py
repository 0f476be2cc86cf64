"""A small Kubernetes API for tests and `kubeloop local`: kmock's emulator, made kopf-ready.

kmock 0.8's `KubernetesEmulator` stores objects and serves list/watch/get/create/patch/delete,
but it is a plain JSON store. `KubeloopEmulator` adds what the operator, the local pod runner
and the real kubectl rely on, the way a real API server behaves (kmock's private internals are
reached only through `kubeloop.local.cluster.kmockcompat`):

- discovery as kubectl reads it (`kubeloop.local.cluster.discovery`): `/api`, `/api/v1`
  (groupVersion `v1`), `/apis` and each group/version, every served resource with its singular
  name, kind, verbs and scope, our three CRDs with the shortNames (`tp`, `md`, `dm`), the `kubeloop`
  category and the `status`/`scale` subresources read from `kubeloop.api.crd` (what
  crds/*.yaml is generated from), the built-in kinds with the short names a real server gives
  (`po`, `svc`, `deploy`, `cj`, `ev`, `ns`, `hpa`...) and the `all` category; this includes
  `v1/namespaces` and `apiextensions.k8s.io/v1/customresourcedefinitions`, which kopf waits
  for before it watches anything;
- lists as `<Kind>List` with `apiVersion` and `metadata.resourceVersion`; watches streamed as
  `application/json`; cluster-scoped `/api/v1/namespaces[/<name>]` (kmock cannot route it: it
  is rewritten in `__call__`);
- server-side printing (`kubeloop.local.cluster.tables`): a list, get or watch that asks for
  `as=Table` is answered with `meta.k8s.io/v1` Tables, the CRDs' printer columns for our kinds
  and the main columns of the built-in ones; a watch starts after the resourceVersion it is
  given (objects the client already listed are not replayed);
- the OpenAPI v3 documents (`kubeloop.local.cluster.openapi`), so `kubectl explain` prints the CRDs'
  field docs and `kubectl apply`/`create` leave field validation to the server, which honours
  `fieldValidation` for kubeloop.io kinds: `Strict` (kubectl's) refuses unknown fields with
  400 `strict decoding error: unknown field "spec.foo"`, `Warn` (the default) and `Ignore` drop
  them (with `Warning` headers under Warn); nulls of non-nullable fields are dropped before
  defaulting, as for any structural schema. In-process changes validate as `Strict`;
- server-side apply and field managers (`kubeloop.local.cluster.serverside_apply`): a PATCH of type
  `application/apply-patch+yaml` creates or merges, records `metadata.managedFields`, answers
  409 when it changes another manager's field unless `force=true`; writes that name a
  `fieldManager` record Update ownership;
- PUT (update): the body replaces the object, server-set metadata kept, status kept for kinds
  with the subresource, a stale `metadata.resourceVersion` answers 409 — checked and stored as
  one step, so of two PUTs that send the same version exactly one wins (leader election on a
  `coordination.k8s.io/v1` Lease relies on it);
- `dryRun=All` (query, or a DELETE's DeleteOptions body) on create, patch (every patch type),
  update and delete: the request is admitted as usual (a refusal is still a 4xx) and the answer
  is what would be stored, but nothing is stored, nothing is collected, no watch event is sent;
- the `scale` subresource (ModelDeployments, Deployments): GET answers an `autoscaling/v1`
  Scale read through the CRD's specReplicasPath/statusReplicasPath/labelSelectorPath; a PATCH
  (merge or JSON) or PUT of a Scale sets the object's replicas and answers the new Scale;
- JSON patches applied here (a failed `test` op answers 422, as kopf expects);
- server-set metadata on create: `name` from `generateName`, `uid`, `resourceVersion`,
  `generation`, `creationTimestamp`, `namespace` from the URL;
- the status subresource: a PATCH on `.../status` changes only `status`; a PATCH on the object
  itself leaves `status` alone for kinds that have the subresource (ours, Jobs, Deployments,
  CronJobs, HPAs, Pods: all built-in workloads have one) and bumps `generation` when `spec`
  changes; every change bumps `resourceVersion`, a no-op patch changes nothing (no event);
- admission for kubeloop.io kinds via `kubeloop.api.admission.admit` (defaults + schema +
  list-type set/map uniqueness + CEL): an invalid custom resource is refused with 422 at
  creation and when a change to its spec makes it invalid, as a real API server does;
- `admission_hooks`: callables that see every object about to be created and refuse it by
  raising `kmock.KubernetesError` (what the API server's own validation of a built-in kind, a
  ValidatingAdmissionPolicy or a webhook would refuse); nothing is stored then;
- what kubectl's everyday verbs read (issue 15): label and field selectors on lists and
  watches (`kubeloop.local.cluster.selectors`: `wait`/`rollout status`/`delete` watch one object by
  `metadata.name`, `describe` lists its Events by `involvedObject.*`, `logs deployment/x` finds
  pods by label); watch-list (`sendInitialEvents=true`) ends the initial objects with the
  `k8s.io/initial-events-end` bookmark kubectl's informers wait for; `pods/<name>/log` served
  from the pod runner's files (`kubeloop.local.cluster.podlogs`, set as `pod_logs` by
  `kubeloop.local.cluster.stack`); SelfSubjectAccessReview answered allowed (`kubectl auth
  can-i`); the protobuf Job of `kubectl create job --from=cronjob/...`
  (`kubeloop.local.cluster.builtins`) and a Job's default `spec.selector`;
- foreground-free garbage collection: deleting an object deletes the objects whose
  `ownerReferences` name its uid (recursively), so a deleted pipeline takes its Jobs along;
  and, as the real garbage collector does, an object created or patched with owners none of
  which exists any more is deleted too (a reconcile in flight when its owner went away would
  otherwise leave a child behind for good).

Not emulated (known gaps): protobuf request bodies other than the two above (kubectl's
generators such as `kubectl create namespace` send them; answered 415: use `kubectl apply
-f`/`create -f`), `exec`/`attach`/`port-forward`, authentication and authorization,
`/openapi/v2` (kubectl uses v3), schemas of the built-in kinds beyond apiVersion/kind/metadata
(their other fields are kept as sent), resourceVersion conflicts on PATCH, a watch with a
selector sending DELETED when an object stops matching it, `deletecollection`, strategic-merge
patch (it is treated as a merge patch), granular ownership inside lists (server-side apply owns
a list whole). A dry run still consumes a resourceVersion number (nothing is stored with it;
the answer carries the stored version).

Public API (the only thing `kubeloop local` and the tests use):

- `KubeloopEmulator()` — the kmock handler; `async with emulator, kmock.Server(emulator)`.
- `await emulator.create_object(obj)`, `await emulator.patch_object(resource, namespace, name,
  patch, subresource=None)`, `await emulator.delete_object(resource, namespace, name)` —
  in-process changes through the same code path as HTTP requests (metadata, status split,
  watch events).
- `emulator.get_object(resource, namespace, name) -> dict | None` and
  `emulator.list_objects(resource, namespace=None) -> list[dict]` — snapshots (deep copies).
- `EmulatorThread` — runs the emulator and its HTTP server in a daemon thread with its own
  event loop: `with EmulatorThread() as cluster: cluster.url; cluster.call(coro_or_fn)`.
- `RESOURCES` — the resources declared for discovery, by `group/version/plural`.
Resources are given as kmock resource strings such as `"batch/v1/jobs"` or `"v1/pods"`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import datetime
import itertools
import json
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

import aiohttp.web
import attrs
import jsonpatch
import kmock
import yaml

from kubeloop.api.admission import FIELD_VALIDATION, admit, admit_status, unknown_fields
from kubeloop.local.cluster import (
    builtins,
    discovery,
    openapi,
    podlogs,
    protobuf,
    serverside_apply,
    tables,
)
from kubeloop.local.cluster.clone import clone
from kubeloop.local.cluster.kmockcompat import EmulatorBase, set_request_fields
from kubeloop.local.cluster.selectors import Selector, SelectorError

__all__ = ["RESOURCES", "EmulatorThread", "KubeloopEmulator", "generate_name"]

T = TypeVar("T")

# The `Warning` headers of the request being handled (the unknown fields dropped).
_WARNINGS: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "_WARNINGS", default=None
)
# In-process changes validate fields as kubectl does.
_STRICT = {"fieldValidation": "Strict"}


def generate_name(prefix: str) -> str:
    """`metadata.generateName` made a name. The API server adds 5 random characters and, since
    Kubernetes 1.32 (RetryGenerateName), draws again when that name is taken; with 5 hex
    characters and no retry, one in two test modules posting about a thousand Events lost
    one to a 409 (kopf drops an Event it cannot post). 12 hex characters: a collision is
    as unlikely as a real server's after its retries."""
    return prefix + uuid.uuid4().hex[:12]


# plural path -> (kind, namespaced, subresources)
RESOURCES: dict[str, tuple[str, bool, tuple[str, ...]]] = {
    "kubeloop.io/v1alpha1/trainingpipelines": ("TrainingPipeline", True, ("status",)),
    "kubeloop.io/v1alpha1/modeldeployments": ("ModelDeployment", True, ("status", "scale")),
    "kubeloop.io/v1alpha1/driftmonitors": ("DriftMonitor", True, ("status",)),
    "v1/namespaces": ("Namespace", False, ("status",)),
    "v1/pods": ("Pod", True, ("status", "log")),
    "v1/services": ("Service", True, ("status",)),
    "v1/serviceaccounts": ("ServiceAccount", True, ()),
    "v1/secrets": ("Secret", True, ()),
    "v1/configmaps": ("ConfigMap", True, ()),
    "v1/events": ("Event", True, ()),
    "events.k8s.io/v1/events": ("Event", True, ()),
    "batch/v1/jobs": ("Job", True, ("status",)),
    "batch/v1/cronjobs": ("CronJob", True, ("status",)),
    "apps/v1/deployments": ("Deployment", True, ("status", "scale")),
    "autoscaling/v2/horizontalpodautoscalers": ("HorizontalPodAutoscaler", True, ("status",)),
    # Stored and served, not enforced: one machine's loopback has no pod network to filter.
    "networking.k8s.io/v1/networkpolicies": ("NetworkPolicy", True, ()),
    "rbac.authorization.k8s.io/v1/roles": ("Role", True, ()),
    "rbac.authorization.k8s.io/v1/rolebindings": ("RoleBinding", True, ()),
    # The operator replicas' leader election (kubeloop.controller.leader).
    "coordination.k8s.io/v1/leases": ("Lease", True, ()),
    "apiextensions.k8s.io/v1/customresourcedefinitions": ("CustomResourceDefinition", False, ()),
    "authorization.k8s.io/v1/selfsubjectaccessreviews": ("SelfSubjectAccessReview", False, ()),
}
# The subresources of each declared resource, by (group, version, plural).
_SUBRESOURCES: dict[tuple[Any, ...], tuple[str, ...]] = {
    (ref.group, ref.version, ref.plural): subresources
    for ref, subresources in (
        (kmock.resource(path), subs) for path, (_, _, subs) in RESOURCES.items()
    )
}

_VERBS = ("get", "list", "watch", "create", "patch", "update", "delete")
# (apiVersion, kind) -> the resource of a namespaced kind: an ownerReference names its owner so.
_NAMESPACED_BY_KIND = {
    (path.rsplit("/", 1)[0], kind): kmock.resource(path)
    for path, (kind, namespaced, _) in RESOURCES.items()
    if namespaced
}


def _now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _key(resource: str) -> str:
    ref = kmock.resource(resource)
    return f"{ref.group + '/' if ref.group else ''}{ref.version}/{ref.plural}"


@attrs.define(kw_only=True)
class KubeloopEmulator(EmulatorBase):
    """kmock's emulator with server-set metadata, status subresources, admission and GC."""

    admission: bool = True
    admission_hooks: list[Callable[[dict[str, Any]], None]] = attrs.field(factory=list)
    # kmock decides which reaction sees a request by scanning every request it has recorded
    # (`request in view`), so without a bound each request costs more than the one before
    # (9 ms at 200 requests, 74 ms at 1200). Keep the most recent ones and those still being
    # handled; None keeps all (tests that audit every request, e.g. the RBAC audit).
    keep_requests: int | None = 16
    # Requests served so far (kmock's request ids restart when its log is trimmed).
    requests_served: int = attrs.field(default=0, init=False)
    _handling: dict[int, kmock.Request] = attrs.field(factory=dict, init=False)
    # Where `pods/<name>/log` reads the containers' output (set by whoever runs the pods).
    pod_logs: podlogs.PodLogs | None = None
    _rv: itertools.count[int] = attrs.field(factory=lambda: itertools.count(1), init=False)
    _last_rv: int = attrs.field(default=0, init=False)
    _served: dict[str, discovery.ServedResource] = attrs.field(factory=dict, init=False)
    _openapi: dict[str, dict[str, Any]] = attrs.field(factory=dict, init=False)
    # Held from a PUT's resourceVersion check until its change is stored: kmock's store lock
    # may make the PUT wait in between, and a second PUT of the same version must not pass
    # the check meanwhile.
    _updating: asyncio.Lock = attrs.field(factory=asyncio.Lock, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._served = discovery.served_resources(RESOURCES)
        # kmock streams watches as application/octet-stream, which kubectl cannot decode.
        json_stream = {"Content-Type": "application/json"}
        (self.fallback**1)[kmock.action.WATCH] << json_stream << self.serve_watch
        for path, (kind, namespaced, subresources) in RESOURCES.items():
            self.resources[path] = kmock.ResourceInfo(
                kind=kind,
                namespaced=namespaced,
                verbs=set(_VERBS),
                subresources=set(subresources),
            )

    @property
    def _store(self) -> Any:
        # kmock's key types are narrower than what it accepts at run time (resource objects).
        return self.objects

    def _openapi_document(self, path: str) -> dict[str, Any] | None:
        """`/openapi/v3` (path "") or one group/version's document, built on first use."""
        if not self._openapi:
            served = list(self._served.values())
            self._openapi[""] = openapi.index(served)
            for doc_path in {openapi.document_path(r) for r in served}:
                self._openapi[doc_path] = openapi.document(served, doc_path) or {}
        return self._openapi.get(path)

    def _next_rv(self) -> str:
        self._last_rv = next(self._rv)
        return str(self._last_rv)

    def _served_of(self, resource: Any) -> discovery.ServedResource | None:
        for path, served in self._served.items():
            if kmock.resource(path) == resource:
                return served
        return None

    # -- discovery and lists, as kubectl reads them --------------------------------------------

    async def serve_api(self, request: kmock.Request) -> Any:
        return discovery.api_versions()

    async def serve_apis(self, request: kmock.Request) -> Any:
        return discovery.api_group_list(self._served.values())

    async def serve_group(self, request: kmock.Request) -> Any:
        group = request.resource.group if request.resource is not None else None
        found = discovery.api_group(self._served.values(), str(group or ""))
        if found is None:
            raise kmock.KubernetesResourceNotFoundError()
        return found

    async def serve_version(self, request: kmock.Request) -> Any:
        ref = request.resource
        found = None
        if ref is not None:
            found = discovery.api_resource_list(
                self._served.values(), str(ref.group or ""), str(ref.version or "")
            )
        if found is None:
            raise kmock.KubernetesResourceNotFoundError()
        return found

    async def serve_list(self, request: kmock.Request) -> Any:
        body: Any = await self.stored_list(request)
        selector = _selector(request)
        items = [item for item in body["items"] if selector.matches(item)]
        served = self._served_of(request.resource)
        if served is None:
            return {**body, "items": items}
        if _as_table(request):
            return self._table(served, items, request)
        return discovery.list_document(served, items, str(self._last_rv))

    def _table(
        self, served: discovery.ServedResource, items: list[dict[str, Any]], request: kmock.Request
    ) -> dict[str, Any]:
        return tables.table(
            tables.columns_for(served.group_version, served.kind),
            items,
            include_object=request.params.get("includeObject", "Metadata"),
            resource_version=str(self._last_rv),
        )

    async def serve_watch(self, request: kmock.Request) -> AsyncIterator[Any]:
        """A watch as a real server streams it: the current objects in scope as ADDED — only
        those newer than the request's resourceVersion (the client listed the rest), all of them
        for `sendInitialEvents=true`, then the end-of-initial-events bookmark kubectl's watch-
        list waits for — then every later change; label/field selectors apply throughout, and
        objects go out as Tables when the client asks for them (`kubectl get -w`)."""
        selector = _selector(request)
        since = _int_or_none(request.params.get("resourceVersion"))
        send_initial = request.params.get("sendInitialEvents") == "true"
        served = self._served_of(request.resource)
        table = served is not None and _as_table(request)

        def shaped(event: dict[str, Any]) -> dict[str, Any]:
            if table and served is not None:
                return {
                    "type": event["type"],
                    "object": self._table(served, [event["object"]], request),
                }
            return event

        def snapshot() -> tuple[list[dict[str, Any]], str]:
            objects = [
                obj.raw
                for (resource, namespace, name), obj in list(self._store.items())
                if resource == request.resource
                and not obj.deleted
                and _in_scope(request, namespace, name)
                and selector.matches(obj.raw)
            ]
            return objects, str(self._last_rv)

        yield b""  # the headers go out now, even if nothing happens for a while
        assert request.resource is not None
        async with self.changes_after(request.resource, snapshot) as ((initial, version), changes):
            for obj in initial:
                rv = _int_or_none(obj.get("metadata", {}).get("resourceVersion"))
                if send_initial or not since or rv is None or rv > since:
                    yield shaped({"type": "ADDED", "object": obj})
            if served is not None and send_initial:
                yield discovery.initial_events_end(served, version)
            async for event in changes:
                obj = event.get("object", {}) if isinstance(event, dict) else {}
                meta = obj.get("metadata", {})
                if _in_scope(request, meta.get("namespace"), meta.get("name")) and (
                    selector.matches(obj)
                ):
                    yield shaped(event)

    # -- request rewriting -------------------------------------------------------------------

    def _subresources(self, resource: Any) -> tuple[str, ...]:
        # By (group, version, plural), as kmock compares resources: a dict lookup, not a parse
        # of every declared resource per request (a twelfth of the emulator's time).
        key = tuple(getattr(resource, field, None) for field in ("group", "version", "plural"))
        return _SUBRESOURCES.get(key, ())

    def _current(self, resource: Any, namespace: str | None, name: str | None) -> Any:
        key = (resource, namespace, name)
        if key in self._store and not self._store[key].deleted:
            return self._store[key].raw
        return None

    def _admit(
        self, obj: dict[str, Any], request: kmock.Request, *, status: bool = False
    ) -> dict[str, Any]:
        """The object as stored (pruned, defaulted) for a kubeloop kind; raises 400 for unknown
        fields under `fieldValidation=Strict` and 422 for what the CRD refuses. `status`: a
        write of the status subresource, where only the status is judged."""
        if not (self.admission and str(obj.get("apiVersion", "")).startswith("kubeloop.io/")):
            return obj
        mode = request.params.get("fieldValidation") or "Warn"  # the API server's default
        if mode not in FIELD_VALIDATION:
            raise kmock.KubernetesError(
                status=400,
                reason="BadRequest",
                message=f"fieldValidation: {mode!r} is not one of {', '.join(FIELD_VALIDATION)}",
            )
        unknown = unknown_fields(obj)
        if status:
            unknown = [path for path in unknown if path.startswith("status.")]
        if mode == "Strict" and unknown:
            kind, version = obj.get("kind"), str(obj.get("apiVersion")).rsplit("/", 1)[-1]
            raise kmock.KubernetesError(
                status=400,
                reason="BadRequest",
                message=f'{kind} in version "{version}" cannot be handled as a {kind}: strict '
                "decoding error: " + ", ".join(f'unknown field "{path}"' for path in unknown),
            )
        result = (admit_status if status else admit)(obj, field_validation=mode)
        if not result.allowed:
            raise kmock.KubernetesError(
                status=422, reason="Invalid", message="; ".join(result.errors)
            )
        warnings = _WARNINGS.get()
        if warnings is not None:
            warnings.extend(result.warnings)
        return result.obj

    def _rewrite(self, request: kmock.Request) -> kmock.Request:
        """Turn a request into what a real API server would store (raises KubernetesError)."""
        if request.resource is None:
            return request
        if request.action == kmock.action.CREATE and isinstance(request.data, dict):
            obj = self._admit(clone(request.data), request)
            for hook in list(self.admission_hooks):
                hook(clone(obj))
            meta = obj.setdefault("metadata", {})
            if not meta.get("name") and meta.get("generateName"):  # kopf's Events use it
                meta["name"] = generate_name(meta["generateName"])
            if request.namespace:
                meta["namespace"] = request.namespace
            meta.setdefault("uid", str(uuid.uuid4()))
            meta["resourceVersion"] = self._next_rv()
            meta["generation"] = 1
            meta.setdefault("creationTimestamp", _now())
            if request.resource == _JOBS:
                obj = builtins.default_job(obj)
            manager = request.params.get("fieldManager")
            if manager and not _is_apply(request):
                obj = serverside_apply.record_update(
                    None, obj, manager, now=_now(), has_status=self._has_status(request)
                )
            set_request_fields(request, data=obj)
            return request
        if request.action == kmock.action.UPDATE and request.name is not None:
            current = self._current(request.resource, request.namespace, request.name)
            if current is None:
                return request  # kmock answers 404
            patch = request.data if request.data is not None else {}
            if isinstance(patch, list):  # JSON patch: apply here, then store as a merge
                try:
                    patched = _patched(clone(current), patch)
                except jsonpatch.JsonPatchException as exc:
                    # e.g. kopf's `test` of metadata.resourceVersion: 422 as a real server.
                    raise kmock.KubernetesError(
                        status=422, reason="Invalid", message=str(exc)
                    ) from exc
                patch = _diff(current, dict(patched))
            patch = clone(patch)
            has_status = "status" in self._subresources(request.resource)
            if request.subresource == "status":
                patch = {"status": patch.get("status")} if "status" in patch else {}
            elif request.subresource is None and has_status:
                patch.pop("status", None)
            new = _patched(clone(current), patch)
            if new == current:  # a no-op: no new resourceVersion, no watch event
                set_request_fields(request, data=None)
                return request
            admitted = None
            if request.subresource is None and new.get("spec") != current.get("spec"):
                # Spec and metadata are judged here, the status on writes of its subresource.
                admitted = self._admit({k: v for k, v in new.items() if k != "status"}, request)
                if "status" in new:
                    admitted["status"] = new["status"]
            elif request.subresource == "status" and new.get("status") != current.get("status"):
                admitted = self._admit(new, request, status=True)
            if admitted is not None:
                patch, new = _diff(current, admitted), admitted
                if not patch:  # e.g. a defaulted field removed: defaulted again, a no-op
                    set_request_fields(request, data=None)
                    return request
            manager = request.params.get("fieldManager")
            if manager and request.subresource is None and not _is_apply(request):
                tracked = serverside_apply.record_update(
                    current, clone(new), manager, now=_now(), has_status=has_status
                )
                patch = _diff(current, tracked)
            meta = patch.setdefault("metadata", {})
            meta["resourceVersion"] = self._next_rv()
            if new.get("spec") != current.get("spec"):
                meta["generation"] = int(current["metadata"].get("generation", 1)) + 1
            set_request_fields(request, data=patch)
            return request
        return request

    def _trim_requests(self) -> None:
        keep = self.keep_requests
        if keep is None or len(self.recorded_requests) <= 2 * keep + len(self._handling):
            return  # trimmed in chunks: amortised O(1) per request
        self.trim_requests(keep, pinned=self._handling.values())

    def _has_status(self, request: kmock.Request) -> bool:
        return "status" in self._subresources(request.resource)

    def _apply_as_change(self, request: kmock.Request) -> kmock.Request:
        """A server-side apply as the create or merge patch that gives its result (see
        `kubeloop.local.cluster.serverside_apply`); a conflict with another field manager
        answers 409."""
        manager = request.params.get("fieldManager")
        if not manager:
            raise kmock.KubernetesError(
                status=400,
                reason="BadRequest",
                message="fieldManager: Required value: is required for apply requests",
            )
        config = request.data
        if not isinstance(config, dict):
            try:
                config = yaml.safe_load(request.text or "")
            except yaml.YAMLError as exc:
                raise kmock.KubernetesError(
                    status=400, reason="BadRequest", message=f"the apply body: {exc}"
                ) from exc
        if not isinstance(config, dict):
            raise kmock.KubernetesError(
                status=400, reason="BadRequest", message="the apply body must be an object"
            )
        current = self._current(request.resource, request.namespace, request.name)
        try:
            new = serverside_apply.apply(
                current,
                config,
                manager,
                now=_now(),
                force=request.params.get("force") == "true",
                has_status=self._has_status(request),
            )
        except serverside_apply.ApplyConflictError as exc:
            causes = [
                {
                    "reason": "FieldManagerConflict",
                    "message": f'conflict with "{c.manager}" using {c.api_version}',
                    "field": "." + ".".join(c.path),
                }
                for c in exc.conflicts
            ]
            raise kmock.KubernetesError(
                status=409, reason="Conflict", message=str(exc), details={"causes": causes}
            ) from exc
        if current is None:
            if request.namespace:
                new["metadata"]["namespace"] = request.namespace
            set_request_fields(request, action=kmock.action.CREATE, data=new)
        else:
            set_request_fields(request, data=_diff(current, new))
        return request

    def _put_as_patch(self, request: kmock.Request) -> kmock.Request:
        """A PUT (update) as the merge patch from the stored object to the body (404 if none).

        Server-set metadata the body leaves out is kept; a stale resourceVersion answers 409.
        """
        current = self._current(request.resource, request.namespace, request.name)
        if current is None:
            raise kmock.KubernetesObjectNotFoundError()
        body = request.data
        if not isinstance(body, dict):
            raise kmock.KubernetesError(
                status=400, reason="BadRequest", message="the body of an update must be an object"
            )
        body = clone(body)
        meta, stored = body.setdefault("metadata", {}), current.get("metadata", {})
        sent_rv = meta.get("resourceVersion")
        if sent_rv and sent_rv != stored.get("resourceVersion"):
            raise kmock.KubernetesError(
                status=409,
                reason="Conflict",
                message=f"Operation cannot be fulfilled on {request.name}: the object has been "
                "modified; please apply your changes to the latest version and try again",
            )
        for key in ("uid", "resourceVersion", "generation", "creationTimestamp", "namespace"):
            if key in stored:
                meta[key] = stored[key]
        if request.subresource is None and "status" in current and "status" not in body:
            body["status"] = current["status"]  # status is not the PUT's to remove
        set_request_fields(request, action=kmock.action.UPDATE)
        set_request_fields(request, data=_diff(current, body))
        return request

    def _would_store(self, request: kmock.Request) -> dict[str, Any]:
        """The answer to a rewritten dry-run request: what would be stored (or deleted)."""
        if request.action == kmock.action.CREATE:
            name = request.data.get("metadata", {}).get("name")
            namespace = request.namespace or request.data.get("metadata", {}).get("namespace")
            if self._current(request.resource, namespace, name) is not None:
                raise _already_exists()
            return dict(request.data)
        current = self._current(request.resource, request.namespace, request.name)
        if current is None:
            raise kmock.KubernetesObjectNotFoundError()
        if request.action == kmock.action.UPDATE and request.data is not None:
            would = _patched(clone(current), request.data)
            # Nothing was written, so the version is the stored one (as a real server answers).
            would["metadata"]["resourceVersion"] = current["metadata"].get("resourceVersion")
            return would
        return clone(current)

    async def _handle_scale(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        """`.../scale`: the object's replicas as an autoscaling/v1 Scale, read and written."""
        served = self._served_of(request.resource)
        if served is None or "scale" not in served.subresources or request.name is None:
            raise kmock.KubernetesResourceNotFoundError()
        current = self._current(request.resource, request.namespace, request.name)
        if current is None:
            raise kmock.KubernetesObjectNotFoundError()
        scale = discovery.scale_document(served, current)
        if request.method == kmock.method.GET:
            return aiohttp.web.json_response(scale)
        if request.method not in {kmock.method.PATCH, kmock.method.PUT}:
            raise kmock.KubernetesError(
                status=405, reason="MethodNotAllowed", message="scale: get, patch or update"
            )
        try:
            if request.method == kmock.method.PUT or request.data is None:
                wanted = request.data or {}
            else:
                wanted = dict(_patched(scale, request.data))
            patch = discovery.scale_patch(served, wanted)
        except (jsonpatch.JsonPatchException, ValueError, TypeError) as exc:
            raise kmock.KubernetesError(status=422, reason="Invalid", message=str(exc)) from exc
        if _dry_run(request):
            update = kmock.Request(
                method="PATCH",
                action=kmock.action.UPDATE,
                resource=request.resource,
                namespace=request.namespace,
                name=request.name,
                data=patch,
            )
            current = self._would_store(self._rewrite(update))
        elif patch:
            current = await self.patch_object(served.key, request.namespace, request.name, patch)
        return aiohttp.web.json_response(discovery.scale_document(served, current))

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        if raw_request.rel_url.path.rstrip("/").startswith("/openapi/v3"):
            await raw_request.read()
            doc = self._openapi_document(
                raw_request.rel_url.path.rstrip("/")[len("/openapi/v3/") :]
            )
            if doc is None:
                return aiohttp.web.json_response({"kind": "Status", "code": 404}, status=404)
            return aiohttp.web.json_response(doc)
        path = _namespace_path(raw_request.rel_url.path)
        if path is not None:
            raw_request = raw_request.clone(rel_url=raw_request.rel_url.with_path(path))
        if "protobuf" in raw_request.headers.get("Content-Type", ""):
            try:
                raw_request = await self._protobuf_as_json(raw_request)
            except kmock.KubernetesError as exc:
                return await self.render_error(exc)
        return await super().__call__(raw_request)

    async def handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        warnings: list[str] = []
        token = _WARNINGS.set(warnings)
        self.requests_served += 1
        self._handling[id(request)] = request
        try:
            response = await self._serve_request(request)
        finally:
            _WARNINGS.reset(token)
            self._handling.pop(id(request), None)
        if not response.prepared:
            for warning in warnings:  # kubectl prints them as `Warning: ...`
                response.headers.add("Warning", '299 - "{}"'.format(warning.replace('"', '\\"')))
        return response

    async def _serve_request(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        self._trim_requests()
        if request.namespace == _CLUSTER and request.resource == _NAMESPACES:
            set_request_fields(request, namespace=None)
        if request.resource == _PODS and request.subresource == "log":
            return await self._serve_log(request)
        if request.resource == _ACCESS_REVIEWS and request.action == kmock.action.CREATE:
            return aiohttp.web.json_response(builtins.access_review(request.data), status=201)
        if request.resource is not None and request.subresource == "scale":
            return await self._handle_scale(request)
        if request.resource is not None and request.method == kmock.method.PUT and request.name:
            async with self._updating:
                return await self._serve_change(self._put_as_patch(request))
        if request.resource is not None and request.name and _is_apply(request):
            request = self._apply_as_change(request)
        return await self._serve_change(request)

    async def _serve_change(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        request = self._rewrite(request)
        if request.resource is not None and _dry_run(request):
            # Validated and admitted above; nothing is stored and no watch event is sent.
            status = 201 if request.action == kmock.action.CREATE else 200
            return aiohttp.web.json_response(self._would_store(request), status=status)
        if request.action == kmock.action.FETCH and request.name and _as_table(request):
            served = self._served_of(request.resource)
            current = self._current(request.resource, request.namespace, request.name)
            if served is not None and current is not None:
                return aiohttp.web.json_response(self._table(served, [current], request))
        if request.action == kmock.action.UPDATE and request.name and request.data is None:
            current = self._current(request.resource, request.namespace, request.name)
            if current is not None:
                return aiohttp.web.json_response(current)
        target_uid: str | None = None
        if request.action in {kmock.action.DELETE, kmock.action.UPDATE} and request.name:
            current = self._current(request.resource, request.namespace, request.name)
            if current is not None:
                target_uid = current.get("metadata", {}).get("uid")
        response = await self.store_and_answer(request)
        # An owner goes on DELETE, or later, when a PATCH removes its last finalizer (kmock
        # deletes it then): either way its dependents follow, including any created meanwhile.
        gone = self._current(request.resource, request.namespace, request.name) is None
        if target_uid is not None and (request.action == kmock.action.DELETE or gone):
            await self._collect(target_uid)
        elif request.action in {kmock.action.CREATE, kmock.action.UPDATE} and isinstance(
            request.data, dict
        ):
            name = request.name or request.data.get("metadata", {}).get("name")
            await self._collect_orphan(request.resource, request.namespace, name)
        return response

    async def _protobuf_as_json(
        self, raw_request: aiohttp.web.BaseRequest
    ) -> aiohttp.web.BaseRequest:
        """The request with its protobuf body read as JSON (`builtins.json_from_protobuf`).

        Done before kmock parses the request: kmock decodes every body as text, which fails on
        protobuf. A body that is not read answers 415 (`KubernetesError`).
        """
        headers = {**raw_request.headers, "Content-Type": "application/json"}
        clone = raw_request.clone(headers=headers)  # aiohttp clones only an unread request
        try:
            obj = builtins.json_from_protobuf(
                await clone.read(), lambda ns, name: self._current(_CRONJOBS, ns, name)
            )
        except (protobuf.ProtobufError, builtins.UnreadableBodyError) as exc:
            raise kmock.KubernetesError(
                status=415,
                reason="UnsupportedMediaType",
                message=f"the local API reads JSON, not protobuf ({exc}; kubectl's generators "
                "such as `create namespace` send protobuf): use `kubectl apply -f` or `create -f`",
            ) from exc
        clone._read_bytes = json.dumps(obj).encode()  # the body kmock reads instead
        return clone

    async def _serve_log(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        """`pods/<name>/log`, read from the pod runner's files (`cluster.podlogs`)."""
        pod = self._current(_PODS, request.namespace, request.name)
        if pod is None:
            raise kmock.KubernetesObjectNotFoundError()
        if self.pod_logs is None:
            raise kmock.KubernetesError(
                status=404, reason="NotFound", message="no pod runner serves logs here"
            )
        try:
            return await self.pod_logs.respond(
                pod,
                request.params,
                request._raw_request,
                lambda: self._current(_PODS, request.namespace, request.name),
            )
        except podlogs.LogError as exc:
            raise kmock.KubernetesError(
                status=exc.status, reason="BadRequest", message=exc.message
            ) from exc

    async def _collect(self, uid: str) -> None:
        """Delete the dependents of a deleted owner, as the garbage collector would."""
        for (resource, namespace, name), obj in list(self._store.items()):
            if obj.deleted:
                continue
            owners = obj.raw.get("metadata", {}).get("ownerReferences") or []
            if any(owner.get("uid") == uid for owner in owners):
                await self.delete_object(resource, namespace, name)

    async def _collect_orphan(self, resource: Any, namespace: str | None, name: str | None) -> None:
        """Delete an object whose every owner is gone, as the garbage collector would."""
        current = self._current(resource, namespace, name)
        owners = (current or {}).get("metadata", {}).get("ownerReferences") or []
        if not owners:
            return
        if any(self._owner_alive(owner, namespace) for owner in owners):
            return  # the common case, by the owner's name: no scan of every object stored
        live = {
            obj.raw.get("metadata", {}).get("uid")
            for obj in list(self._store.values())
            if not obj.deleted
        }
        if not any(owner.get("uid") in live for owner in owners):
            await self.delete_object(resource, namespace, name or "")

    def _owner_alive(self, owner: Mapping[str, Any], namespace: str | None) -> bool:
        """Whether the namespaced owner this reference names (kind and name) is stored with its
        uid; False also when it cannot be looked up so (the caller then scans by uid)."""
        found = _NAMESPACED_BY_KIND.get((str(owner.get("apiVersion")), str(owner.get("kind"))))
        if found is None or not owner.get("name"):
            return False
        current = self._current(found, namespace, str(owner["name"]))
        return current is not None and current.get("metadata", {}).get("uid") == owner.get("uid")

    # -- in-process API ----------------------------------------------------------------------

    async def create_object(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create an object from a manifest (namespace from its metadata); returns it stored."""
        api_version, kind = obj["apiVersion"], obj["kind"]
        path = next(
            p
            for p, (k, _, _) in RESOURCES.items()
            if k == kind and p.rsplit("/", 1)[0] == api_version
        )
        namespace = obj.get("metadata", {}).get("namespace")
        request = kmock.Request(
            method="POST",
            action=kmock.action.CREATE,
            resource=kmock.resource(path),
            namespace=namespace,
            data=obj,
            params=_STRICT,
        )
        request = self._rewrite(request)
        key = (request.resource, namespace, request.data["metadata"]["name"])
        async with self.lock:
            if key in self._store and not self._store[key].deleted:
                raise _already_exists()
            if key in self._store:
                self._store[key].create(request.data)
            else:
                self._store[key] = request.data
            raw = self._store[key].raw
            await self.bus(request.resource).put({"type": "ADDED", "object": raw})
        created: dict[str, Any] = clone(raw)
        await self._collect_orphan(request.resource, namespace, created["metadata"]["name"])
        return created

    async def patch_object(
        self,
        resource: str,
        namespace: str | None,
        name: str,
        patch: dict[str, Any],
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """Merge-patch an object (or its `status` with subresource="status"); returns it."""
        request = kmock.Request(
            method="PATCH",
            action=kmock.action.UPDATE,
            resource=kmock.resource(_key(resource)),
            namespace=namespace,
            name=name,
            subresource=subresource,
            data=patch,
            params=_STRICT,
        )
        request = self._rewrite(request)
        key = (request.resource, namespace, name)
        if request.data is None:  # no-op
            return self.get_object(resource, namespace, name) or {}
        async with self.lock:
            if key not in self._store or self._store[key].deleted:
                raise kmock.KubernetesObjectNotFoundError()
            self._store[key].patch(request.data)
            raw = self._store[key].raw
            await self.bus(request.resource).put({"type": "MODIFIED", "object": raw})
        patched: dict[str, Any] = clone(raw)
        await self._collect_orphan(request.resource, namespace, name)
        return patched

    async def delete_object(self, resource: Any, namespace: str | None, name: str) -> None:
        """Delete an object (no finalizer handling) and, recursively, its dependents."""
        ref = kmock.resource(_key(resource)) if isinstance(resource, str) else resource
        key = (ref, namespace, name)
        async with self.lock:
            if key not in self._store or self._store[key].deleted:
                return
            raw = self._store[key].raw
            self._store[key].delete()
            await self.bus(ref).put({"type": "DELETED", "object": raw})
        uid = raw.get("metadata", {}).get("uid")
        if uid:
            await self._collect(uid)

    def get_object(self, resource: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        """A deep copy of the stored object, or None."""
        found = self._current(kmock.resource(_key(resource)), namespace, name)
        return clone(found) if found is not None else None

    def names(self, resource: str, namespace: str | None = None) -> list[str]:
        """The names of the stored objects of a resource, copying none of them (a poll that
        costs the server next to nothing)."""
        ref = kmock.resource(_key(resource))
        return [
            name
            for (res, ns, name), obj in list(self._store.items())
            if res == ref and not obj.deleted and (namespace is None or ns == namespace)
        ]

    def list_objects(self, resource: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """Deep copies of the stored objects of a resource (all namespaces when None)."""
        ref = kmock.resource(_key(resource))
        return [
            clone(obj.raw)
            for (res, ns, _), obj in list(self._store.items())
            if res == ref and not obj.deleted and (namespace is None or ns == namespace)
        ]


# kmock reads `/api/v1/namespaces[/<name>]` as the namespace <name> with no resource (and
# fails on the bare list), so those paths are rewritten to a form it parses as the `namespaces`
# resource in a placeholder namespace, which `handle` then clears: Namespaces are cluster-scoped.
_CLUSTER = "-cluster-"
_NAMESPACES = kmock.resource("v1/namespaces")
_PODS = kmock.resource("v1/pods")
_JOBS = kmock.resource("batch/v1/jobs")
_CRONJOBS = kmock.resource("batch/v1/cronjobs")
_ACCESS_REVIEWS = kmock.resource("authorization.k8s.io/v1/selfsubjectaccessreviews")


def _selector(request: kmock.Request) -> Selector:
    """The request's label and field selectors (400 naming the one that does not parse)."""
    try:
        return Selector.from_params(request.params)
    except SelectorError as exc:
        raise kmock.KubernetesError(status=400, reason="BadRequest", message=str(exc)) from exc


def _in_scope(request: kmock.Request, namespace: str | None, name: str | None) -> bool:
    """Whether an object is one a watch asked for (its namespace, or every one; its name)."""
    return (request.namespace is None or namespace == request.namespace) and (
        request.name is None or name == request.name
    )


def _namespace_path(path: str) -> str | None:
    """`/api/v1/namespaces[/<name>[/status]]` as kmock can route it; None for any other path."""
    parts = path.strip("/").split("/")
    if parts[:3] != ["api", "v1", "namespaces"] or len(parts) > 5:
        return None
    if len(parts) == 5 and parts[4] not in {"status", "finalize"}:
        return None  # /api/v1/namespaces/<ns>/<plural>: a namespaced resource
    return "/".join(["", "api", "v1", "namespaces", _CLUSTER, *parts[2:]])


def _dry_run(request: kmock.Request) -> bool:
    """`?dryRun=All`, or a DELETE whose DeleteOptions body says `dryRun: [All]` (kubectl's)."""
    if request.params.get("dryRun") == "All":
        return True
    options = request.data if request.action == kmock.action.DELETE else None
    return isinstance(options, dict) and "All" in (options.get("dryRun") or [])


def _is_apply(request: kmock.Request) -> bool:
    """A server-side apply: a PATCH of type application/apply-patch+yaml."""
    ctype = next((v for k, v in request.headers.items() if k.lower() == "content-type"), "")
    return request.method == kmock.method.PATCH and "apply-patch" in ctype


def _as_table(request: kmock.Request) -> bool:
    accept = next((v for k, v in request.headers.items() if k.lower() == "accept"), "")
    return tables.wants_table(accept)


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _already_exists() -> kmock.KubernetesError:
    return kmock.KubernetesError(
        status=409, reason="AlreadyExists", message="the object already exists"
    )


def _merged(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (None deletes a key), on copies."""
    if not isinstance(patch, dict):
        return clone(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merged(out.get(key), value)
    return out


def _patched(obj: dict[str, Any], patch: Any) -> dict[str, Any]:
    """`obj` with a merge patch (a dict) or a JSON patch (a list) applied, on a copy."""
    if isinstance(patch, list):
        return dict(jsonpatch.apply_patch(clone(obj), patch, in_place=False))
    return dict(_merged(obj, patch))


def _diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """A merge patch that turns `old` into `new` (None deletes a key)."""
    patch: dict[str, Any] = {}
    for key in old.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        if key not in old:
            patch[key] = value
        elif isinstance(value, dict) and isinstance(old[key], dict):
            sub = _diff(old[key], value)
            if sub:
                patch[key] = sub
        elif value != old[key]:
            patch[key] = value
    return patch


class EmulatorThread:
    """The emulator served over HTTP from a daemon thread with its own event loop."""

    def __init__(
        self, *, admission: bool = True, port: int | None = None, keep_requests: int | None = 16
    ) -> None:
        self.emulator = KubeloopEmulator(admission=admission, keep_requests=keep_requests)
        self._port = port
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="kubeloop-emulator", daemon=True)
        self.url = ""

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        kwargs: dict[str, Any] = {"host": "127.0.0.1"}
        if self._port is not None:
            kwargs["port"] = self._port
        async with self.emulator, kmock.Server(self.emulator, **kwargs) as server:
            self.url = f"http://127.0.0.1:{server.port}"
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> EmulatorThread:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the emulator did not start in 30 s")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def call(self, fn: Callable[[], T] | Awaitable[T], timeout: float = 30) -> T:
        """Run a coroutine or a plain function on the emulator's loop; returns its result."""

        async def run() -> T:
            if callable(fn):
                return fn()
            return await fn

        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(run(), self._loop)
        return future.result(timeout)
