"""What the API server itself does for built-in kinds, where kubectl relies on it.

- `default_job`: a Job created without `spec.selector` gets the one the API server sets
  (`batch.kubernetes.io/controller-uid: <uid>`) and its pod template the labels that selector
  and `job-name` read, so `kubectl logs job/<name>` finds the Job's pods (the pod runner labels
  them the same way).
- `access_review`: the answer to a `SelfSubjectAccessReview` (`kubectl auth can-i`). The local
  API has no authentication or authorization: everything is allowed, and the answer says so.
- `json_from_protobuf`: a protobuf body kubectl sends, as JSON: a SelfSubjectAccessReview, or
  (`job_from_protobuf`) the Job `kubectl create job --from=cronjob/<name>` sends. kubectl's typed
  client encodes it in protobuf; `kubeloop.local.cluster.protobuf` reads its metadata, and the
  spec is the one kubectl copied from the owning CronJob's `spec.jobTemplate.spec`, so it is
  taken from the stored CronJob the ownerReference names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from kubeloop.local.cluster.clone import clone
from kubeloop.local.cluster.cronjobs import MANUAL_ANNOTATION
from kubeloop.local.cluster.protobuf import decode_envelope, object_meta, review_spec

__all__ = [
    "UnreadableBodyError",
    "access_review",
    "default_job",
    "job_from_protobuf",
    "json_from_protobuf",
]


class UnreadableBodyError(ValueError):
    """A protobuf body this module cannot turn into an object."""


def default_job(job: dict[str, Any]) -> dict[str, Any]:
    """The Job as stored, with the selector and template labels the API server defaults."""
    spec = job.setdefault("spec", {})
    uid = job.get("metadata", {}).get("uid")
    if spec.get("selector") or spec.get("manualSelector") or not uid:
        return job
    name = job["metadata"].get("name")
    spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    template_meta = spec.setdefault("template", {}).setdefault("metadata", {})
    labels = template_meta.setdefault("labels", {})
    labels.update(
        {
            "batch.kubernetes.io/controller-uid": uid,
            "batch.kubernetes.io/job-name": name,
            "controller-uid": uid,
            "job-name": name,
        }
    )
    return job


def access_review(body: Mapping[str, Any] | None) -> dict[str, Any]:
    """The SelfSubjectAccessReview answered: allowed."""
    spec = dict((body or {}).get("spec") or {})
    return {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "metadata": {},
        "spec": spec,
        "status": {
            "allowed": True,
            "reason": "the local API (kubeloop local) does not authorize: everything is allowed",
        },
    }


def json_from_protobuf(
    body: bytes, find: Callable[[str, str], Mapping[str, Any] | None]
) -> dict[str, Any]:
    """The JSON object of a protobuf body this module reads; `find(namespace, name)` reads a
    stored CronJob. Anything else raises `UnreadableBodyError` (or `ProtobufError`)."""
    api_version, kind, raw = decode_envelope(body)
    if kind == "SelfSubjectAccessReview":
        return {"apiVersion": api_version, "kind": kind, "spec": review_spec(raw)}
    if kind == "Job":
        return job_from_protobuf(raw, find)
    raise UnreadableBodyError(f"{kind or 'this object'} is not read from protobuf")


def job_from_protobuf(
    raw: bytes, find: Callable[[str, str], Mapping[str, Any] | None]
) -> dict[str, Any]:
    """The Job kubectl created from a CronJob; `find(namespace, name)` reads a CronJob."""
    meta = object_meta(raw)
    annotations = meta.get("annotations") or {}
    owner = next((o for o in meta.get("ownerReferences") or [] if o.get("kind") == "CronJob"), None)
    if annotations.get(MANUAL_ANNOTATION) != "manual" or owner is None:
        raise UnreadableBodyError(
            "only a Job made by `kubectl create job --from=cronjob/<name>` is read from protobuf"
        )
    cronjob = find(str(meta.get("namespace")), str(owner.get("name")))
    if cronjob is None or cronjob.get("metadata", {}).get("uid") != owner.get("uid"):
        raise UnreadableBodyError(f"the CronJob {owner.get('name')} the Job names does not exist")
    template = (cronjob.get("spec") or {}).get("jobTemplate") or {}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta,
        "spec": clone(template.get("spec") or {}),
    }
