"""Server-side printing: objects as the `meta.k8s.io/v1` Table that `kubectl get` prints.

kubectl asks for `Accept: application/json;as=Table;g=meta.k8s.io;v=v1` and prints the
columns the server chose. For the kubeloop.io kinds those are the CRD's
`additionalPrinterColumns` (read from `kubeloop.api.crd`, what crds/*.yaml is generated from),
after a `Name` column, evaluated as the API server does: a simple JSON path, a missing value is
an empty cell, a `date` column is shown as an age (`5m`). The built-in kinds get the main
columns a real server prints for them (pods READY/STATUS/RESTARTS, deployments READY/UP-TO-DATE/
AVAILABLE...); any other kind gets NAME and AGE. kubectl itself adds NAMESPACE with `-A`.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kubeloop.api.crd import KINDS, build_crd

__all__ = [
    "Column",
    "columns_for",
    "human_duration",
    "json_path",
    "table",
    "wants_table",
]

Obj = Mapping[str, Any]


@dataclass(frozen=True)
class Column:
    """One column: its TableColumnDefinition and how a cell is read from an object."""

    name: str
    type: str
    value: Callable[[Obj, datetime.datetime], Any]
    description: str = ""
    format: str = ""
    priority: int = 0

    def definition(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        }


def wants_table(accept: str) -> bool:
    """True when an Accept header asks for a Table first (kubectl get's human output)."""
    first = accept.split(",", maxsplit=1)[0]
    params = {p.strip() for p in first.split(";")[1:]}
    return "as=Table" in params


_STEP = re.compile(r"\.([A-Za-z0-9_-]+)|\[\?\(@\.([A-Za-z0-9_]+)==\"([^\"]*)\"\)\]|\[(\d+)\]")


def json_path(obj: Any, path: str) -> Any:
    """The value at a simple JSON path (`.a.b`, `[0]`, `[?(@.type=="Ready")]`), or None."""
    node = obj
    pos = 0
    while pos < len(path) and node is not None:
        step = _STEP.match(path, pos)
        if step is None:
            raise ValueError(f"unsupported JSON path {path!r} at {path[pos:]!r}")
        pos = step.end()
        key, field, wanted, index = step.groups()
        if key is not None:
            node = node.get(key) if isinstance(node, Mapping) else None
        elif index is not None:
            node = node[int(index)] if isinstance(node, list) and int(index) < len(node) else None
        else:
            found = [i for i in node or [] if isinstance(i, Mapping) and i.get(field) == wanted]
            node = found[0] if found else None
    return node


def human_duration(seconds: float) -> str:
    """apimachinery's HumanDuration: `45s`, `3m20s`, `5h`, `3d4h`..."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes, hours = s // 60, s // 3600
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 192:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    years = hours // (24 * 365)
    if hours < 24 * 365 * 8:
        return f"{years}y{(hours // 24) % 365}d"
    return f"{years}y"


def _age(value: Any, now: datetime.datetime) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        then = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return human_duration((now - then).total_seconds())


def _cell(kind: str, value: Any, now: datetime.datetime) -> Any:
    """A CRD column's cell as the API server's table convertor gives it."""
    if value is None:
        return None
    if kind == "date":
        return _age(value, now)
    if kind == "string":
        return value if isinstance(value, str) else str(value)
    return value


def _path(kind: str, path: str) -> Callable[[Obj, datetime.datetime], Any]:
    return lambda obj, now: _cell(kind, json_path(obj, path), now)


_NAME = Column(
    "Name",
    "string",
    lambda obj, now: obj.get("metadata", {}).get("name"),
    "Name must be unique within a namespace.",
    format="name",
)
_AGE = Column(
    "Age",
    "string",
    lambda obj, now: _age(obj.get("metadata", {}).get("creationTimestamp"), now),
    "CreationTimestamp is a timestamp representing the server time when this object was created.",
)


def _pod_status(pod: Obj, now: datetime.datetime) -> str:
    status = pod.get("status", {})
    if pod.get("metadata", {}).get("deletionTimestamp"):
        return "Terminating"
    for container in status.get("containerStatuses") or []:
        waiting = (container.get("state") or {}).get("waiting") or {}
        terminated = (container.get("state") or {}).get("terminated") or {}
        if waiting.get("reason"):
            return str(waiting["reason"])
        if terminated.get("reason") and status.get("phase") not in {"Succeeded", "Failed"}:
            return str(terminated["reason"])
    return str(status.get("reason") or status.get("phase") or "Pending")


def _pod_ready(pod: Obj, now: datetime.datetime) -> str:
    containers = pod.get("spec", {}).get("containers") or []
    statuses = pod.get("status", {}).get("containerStatuses") or []
    return f"{sum(1 for c in statuses if c.get('ready'))}/{len(containers)}"


def _restarts(pod: Obj, now: datetime.datetime) -> int:
    statuses = pod.get("status", {}).get("containerStatuses") or []
    return sum(int(c.get("restartCount") or 0) for c in statuses)


def _job_status(job: Obj, now: datetime.datetime) -> str:
    conditions = job.get("status", {}).get("conditions") or []
    for kind, shown in (("Complete", "Complete"), ("Failed", "Failed")):
        if any(c.get("type") == kind and c.get("status") == "True" for c in conditions):
            return shown
    return "Running" if job.get("status", {}).get("active") else "Pending"


def _ratio(done: str, wanted: str, default: int = 1) -> Callable[[Obj, datetime.datetime], str]:
    def cell(obj: Obj, now: datetime.datetime) -> str:
        want = json_path(obj, wanted)
        return f"{json_path(obj, done) or 0}/{default if want is None else want}"

    return cell


def _int(path: str) -> Callable[[Obj, datetime.datetime], int]:
    return lambda obj, now: int(json_path(obj, path) or 0)


def _event_object(event: Obj, now: datetime.datetime) -> str:
    ref = event.get("involvedObject") or event.get("regarding") or {}
    return f"{str(ref.get('kind', '')).lower()}/{ref.get('name', '')}"


def _last_seen(event: Obj, now: datetime.datetime) -> str | None:
    when = (
        event.get("lastTimestamp")
        or event.get("eventTime")
        or event.get("metadata", {}).get("creationTimestamp")
    )
    return _age(when, now)


def _ports(service: Obj, now: datetime.datetime) -> str:
    ports = service.get("spec", {}).get("ports") or []
    text = ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in ports)
    return text or "<none>"


def _text(path: str, missing: str = "<none>") -> Callable[[Obj, datetime.datetime], str]:
    return lambda obj, now: str(json_path(obj, path) or missing)


# The main columns of a real API server's printers for the built-in kinds, by kind.
_BUILTIN: dict[str, tuple[Column, ...]] = {
    "Pod": (
        _NAME,
        Column("Ready", "string", _pod_ready, "The aggregate readiness state of this pod."),
        Column("Status", "string", _pod_status, "The aggregate status of the containers."),
        Column("Restarts", "string", _restarts, "The number of times the containers restarted."),
        _AGE,
    ),
    "Job": (
        _NAME,
        Column("Status", "string", _job_status, "Status of the job."),
        Column(
            "Completions",
            "string",
            _ratio(".status.succeeded", ".spec.completions"),
            "The desired number of successfully finished pods the job should be run with.",
        ),
        _AGE,
    ),
    "Deployment": (
        _NAME,
        Column(
            "Ready",
            "string",
            _ratio(".status.readyReplicas", ".spec.replicas"),
            "Number of the pod with ready state",
        ),
        Column("Up-to-date", "string", _int(".status.updatedReplicas"), "Total updated pods."),
        Column("Available", "string", _int(".status.availableReplicas"), "Available pods."),
        _AGE,
    ),
    "CronJob": (
        _NAME,
        Column("Schedule", "string", _text(".spec.schedule"), "The schedule."),
        Column("Suspend", "boolean", lambda o, now: bool(json_path(o, ".spec.suspend")), ""),
        Column(
            "Active",
            "integer",
            lambda o, now: len(json_path(o, ".status.active") or []),
            "Active jobs.",
        ),
        Column(
            "Last Schedule",
            "string",
            lambda o, now: _age(json_path(o, ".status.lastScheduleTime"), now) or "<none>",
            "When the job was last scheduled.",
        ),
        _AGE,
    ),
    "Event": (
        Column("Last Seen", "string", _last_seen, "Time since the event was last seen."),
        Column("Type", "string", _text(".type", ""), "Type of this event."),
        Column("Reason", "string", _text(".reason", ""), "Reason why the event happened."),
        Column("Object", "string", _event_object, "The object this event is about."),
        Column("Message", "string", _text(".message", ""), "A human-readable description."),
    ),
    "Lease": (
        _NAME,
        Column("Holder", "string", _text(".spec.holderIdentity", ""), "The holder's identity."),
        _AGE,
    ),
    "Service": (
        _NAME,
        Column("Type", "string", _text(".spec.type", "ClusterIP"), "The type of the service."),
        Column("Cluster-IP", "string", _text(".spec.clusterIP"), "The cluster IP."),
        Column("Port(s)", "string", _ports, "The ports of the service."),
        _AGE,
    ),
}


def _crd_columns() -> dict[tuple[str, str], tuple[Column, ...]]:
    out: dict[tuple[str, str], tuple[Column, ...]] = {}
    for kind in KINDS:
        spec = build_crd(kind)["spec"]
        version = spec["versions"][0]
        columns = [
            Column(
                c["name"],
                c["type"],
                _path(c["type"], c["jsonPath"]),
                c.get("description", ""),
                format=c.get("format", ""),
                priority=int(c.get("priority", 0)),
            )
            for c in version.get("additionalPrinterColumns", [])
        ]
        out[(f"{spec['group']}/{version['name']}", spec["names"]["kind"])] = (_NAME, *columns)
    return out


_CRDS = _crd_columns()


def columns_for(api_version: str, kind: str) -> tuple[Column, ...]:
    """The columns a real API server prints for a kind (NAME and AGE for the others)."""
    return _CRDS.get((api_version, kind)) or _BUILTIN.get(kind) or (_NAME, _AGE)


def _row_object(obj: Obj, include: str) -> dict[str, Any] | None:
    if include == "None":
        return None
    if include == "Object":
        return dict(obj)
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": dict(obj.get("metadata", {})),
    }


def table(
    columns: Iterable[Column],
    objects: Iterable[Obj],
    *,
    include_object: str = "Metadata",
    resource_version: str = "",
    now: datetime.datetime | None = None,
) -> dict[str, Any]:
    """A `meta.k8s.io/v1` Table of `objects` (includeObject: None, Metadata or Object)."""
    now = now or datetime.datetime.now(tz=datetime.UTC)
    chosen = list(columns)
    rows = []
    for obj in objects:
        row: dict[str, Any] = {"cells": [c.value(obj, now) for c in chosen]}
        embedded = _row_object(obj, include_object)
        if embedded is not None:
            row["object"] = embedded
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": [c.definition() for c in chosen],
        "rows": rows,
    }
