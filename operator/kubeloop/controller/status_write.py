"""The one way the controllers write status: through the typed status model of the kind.

The controllers keep status as a dict while they reconcile; here, at the write boundary, it is
parsed into `TrainingPipelineStatus`, `ModelDeploymentStatus` or `DriftMonitorStatus` (which
refuse unknown fields, at every level) and what is written is the merge patch from the status
read to `model.to_wire(set_only=True)`: the fields the controller set, typed (fields it never
set are not written with their defaults, so status keeps the shape its readers know).

A mistyped key (`currentRun.progres`) or a wrong type raises `StatusSchemaError` naming the
object and the field instead of being written, which a real API server would prune without a
word (the CRD's schema is structural).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from kubeloop.api.common import KubeModel
from kubeloop.api.deployment import ModelDeploymentStatus
from kubeloop.api.monitor import DriftMonitorStatus
from kubeloop.api.training import TrainingPipelineStatus
from kubeloop.controller.runtime import runtime

__all__ = ["STATUS_MODELS", "StatusSchemaError", "merge_patch", "status_patch", "write_status"]

STATUS_MODELS: dict[str, type[KubeModel]] = {
    "TrainingPipeline": TrainingPipelineStatus,
    "ModelDeployment": ModelDeploymentStatus,
    "DriftMonitor": DriftMonitorStatus,
}


class StatusSchemaError(ValueError):
    """A status the kind's status model does not accept: a bug in the operator, not input."""

    def __init__(self, kind: str, name: str, error: ValidationError) -> None:
        fields = "; ".join(
            f"status.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()
        )
        super().__init__(f"{kind} {name}: not written, the status model refuses it: {fields}")


def merge_patch(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7396) from `before` to `after`: maps are diffed key by key,
    anything else is replaced, and a key `after` lacks becomes null (removed)."""
    patch: dict[str, Any] = {}
    for key, value in after.items():
        old = before.get(key)
        if isinstance(value, Mapping) and isinstance(old, Mapping):
            inner = merge_patch(old, value)
            if inner:
                patch[key] = inner
        elif key not in before or old != value:
            patch[key] = value
    patch.update({key: None for key, old in before.items() if key not in after and old is not None})
    return patch


def status_patch(
    kind: str, name: str, before: Mapping[str, Any], after: Mapping[str, Any]
) -> dict[str, Any]:
    """The merge patch that writes `after` (a status as a dict) over `before` (the status read),
    built from the typed model; raises StatusSchemaError when the model refuses `after`."""
    try:
        model = STATUS_MODELS[kind].model_validate(_without_nulls(after))
    except ValidationError as error:
        raise StatusSchemaError(kind, name, error) from error
    return merge_patch(before, model.to_wire(set_only=True))


def _without_nulls(value: Any) -> Any:
    """A null in the controllers' status dicts means "not set" (a merge patch removes it)."""
    if isinstance(value, Mapping):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def write_status(
    kind: str, namespace: str, name: str, before: Mapping[str, Any], after: Mapping[str, Any]
) -> bool:
    """Write what changed from `before` to `after` through the status subresource; returns
    whether anything was sent. Only what changed goes: a field written meanwhile by another
    writer is not overwritten with the copy read at the start of the reconcile."""
    patch = status_patch(kind, name, before, after)
    if patch:
        runtime.api.patch_status(kind, namespace, name, patch)
    return bool(patch)
