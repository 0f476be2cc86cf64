"""Watch-fed caches of the objects the operator owns and reads: `Kube.get` and `Kube.list`
answer from here instead of the API server, for the kinds (and label slices) being watched.

A slice is a kind, or the objects of a kind that carry a label (`kubeloop.io/trainingpipeline`
on Jobs): a list and watch of it feeds the cache (controller/informer.py), and once a slice is
watched the cache is the answer for it: an object not in the cache does not exist. A read is
served from a slice only when the request says it is inside it (a `list` whose selector has the
slice's label, a `get` whose `within` labels do); anything else still goes to the API.

Fresh enough to decide on:
- every slice is listed before any handler runs (the operator's startup waits for the lists;
  a watch that lost its place lists its slice again), so a resume or a timer never sees a
  half-filled cache;
- an event's handlers run after the cache took that event's object, so a reconcile a Job's
  event started sees at least that Job;
- every write of the operator puts what the API server answered into the cache at once
  (`observed`), so the next reconcile sees its own allocation even before the watch brings it
  back; an older version arriving later (a watch event in flight) is ignored, by
  resourceVersion.

Jobs and Pods are kept without what no reader needs (a Job's pod template, a Pod's spec beyond
its containers' ports), so a cache of 1000 pipelines' Jobs stays small. Each object is kept as
its compact JSON (with its version and labels beside it, which the cache itself reads): a
pipeline's body as Python dicts and strings is ~10x its JSON, and a read decodes a fresh copy
(a reconcile may change what it read) faster than it deep-copied the dicts.
"""

from __future__ import annotations

import builtins
import json
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Cache", "trimmed", "version_of"]

_Key = tuple[str, str, str]
# (kind, namespace, slice label or None, its value or None): the keys of that slice's objects
_Group = tuple[str, str, str | None, str | None]


def version_of(body: Mapping[str, Any]) -> int | None:
    """An object's resourceVersion as a number (etcd's revision), None when it is not one."""
    raw: Any = (body.get("metadata") or {}).get("resourceVersion")
    try:
        return int(raw)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class _Entry:
    """One kept object: its resourceVersion (a number, or None), its labels, its JSON."""

    version: int | None
    labels: dict[str, str]
    raw: bytes

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> _Entry:
        labels = (body.get("metadata") or {}).get("labels") or {}
        raw = json.dumps(body, separators=(",", ":"), default=str).encode()
        return cls(version_of(body), {str(k): str(v) for k, v in labels.items()}, raw)

    def body(self) -> dict[str, Any]:
        decoded: dict[str, Any] = json.loads(self.raw)
        return decoded


def _containers(spec: Mapping[str, Any], field: str) -> list[dict[str, Any]]:
    return [
        {k: c[k] for k in ("name", "ports") if k in c}
        for c in spec.get(field) or []
        if isinstance(c, Mapping)
    ]


def trimmed(kind: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """What the cache keeps of `body`: all of it but managedFields, a Job's pod template and a
    Pod's spec beyond its containers' names and ports (what the progress endpoint needs)."""
    out = dict(body)
    meta = dict(out.get("metadata") or {})
    meta.pop("managedFields", None)
    out["metadata"] = meta
    spec = out.get("spec")
    if kind == "Job" and isinstance(spec, Mapping):
        out["spec"] = {k: v for k, v in spec.items() if k != "template"}
    elif kind == "Pod" and isinstance(spec, Mapping):
        out["spec"] = {
            "initContainers": _containers(spec, "initContainers"),
            "containers": _containers(spec, "containers"),
        }
    return out


class Cache:
    """Objects by (kind, namespace, name), for the slices being watched (thread-safe)."""

    def __init__(self) -> None:
        self._objects: dict[_Key, _Entry] = {}
        self._groups: dict[_Group, set[_Key]] = {}
        self._slices: dict[str, set[str | None]] = {}
        self._guard = threading.Lock()

    def watch(self, kind: str, label: str | None = None) -> None:
        """Serve reads of `kind` (of its objects with `label`) from here from now on: the
        caller feeds every object of the slice (its list first: controller/informer.py)."""
        with self._guard:
            self._slices.setdefault(kind, set()).add(label)

    def covers(self, kind: str, labels: Iterable[str] | None = None) -> bool:
        """Whether objects of `kind` carrying `labels` (keys) are all in a watched slice."""
        slices = self._slices.get(kind)
        if not slices:
            return False
        return None in slices or any(key in slices for key in labels or ())

    def observed(self, body: Mapping[str, Any]) -> None:
        """Keep `body` (from a watch event or a write's answer) unless a newer version is kept
        already; an object of no watched slice is not kept."""
        kind, meta = body.get("kind"), body.get("metadata") or {}
        if not isinstance(kind, str) or kind not in self._slices:
            return
        key = (kind, str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        if not self.covers(kind, meta.get("labels") or {}):
            self.forget(*key)  # its label removed: it left the slice
            return
        version = version_of(body)
        with self._guard:
            old = self._objects.get(key)
        kept = old.version if old is not None else None
        if version is not None and kept is not None and version <= kept:
            # What is kept is this very version (a watch event echoing the operator's own
            # write, whose answer was kept first) or a newer one: not encoded again.
            return
        new = _Entry.of(trimmed(kind, body))
        with self._guard:
            old = self._objects.get(key)
            kept = old.version if old is not None else None
            if old is None or version is None or kept is None or version >= kept:
                self._ungroup(key, old)
                self._objects[key] = new
                for group in self._groups_of(key, new):
                    self._groups.setdefault(group, set()).add(key)

    def _groups_of(self, key: _Key, entry: _Entry) -> list[_Group]:
        kind, namespace, _ = key
        labels = entry.labels
        return [
            (kind, namespace, label, None if label is None else str(labels[label]))
            for label in self._slices.get(kind, ())
            if label is None or label in labels
        ]

    def _ungroup(self, key: _Key, old: _Entry | None) -> None:
        for group in self._groups_of(key, old) if old is not None else ():
            members = self._groups.get(group)
            if members is not None:
                members.discard(key)
                if not members:
                    del self._groups[group]

    def forget(self, kind: str, namespace: str, name: str, version: int | None = None) -> None:
        """The object is gone (a DELETED event, or our delete). `version`: the deleted
        object's resourceVersion, when known: a newer object kept under the name (re-created,
        and already seen from a write's answer or its own event) stays."""
        key = (kind, namespace, name)
        with self._guard:
            kept = self._objects.get(key)
            if kept is None:
                return
            if version is not None and kept.version is not None and kept.version > version:
                return
            self._ungroup(key, self._objects.pop(key))

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self._guard:
            found = self._objects.get((kind, namespace, name))
        return found.body() if found is not None else None

    def list(
        self, kind: str, namespace: str, labels: Mapping[str, str] | None = None
    ) -> list[dict[str, Any]]:
        """Objects of `kind` in `namespace` with all of `labels`, by name."""
        labels = labels or {}
        slices = self._slices.get(kind, set())
        label = next((key for key in sorted(labels) if key in slices), None)
        group = (kind, namespace, label, None if label is None else labels[label])
        want = labels.items()
        with self._guard:
            candidates = [(key[2], self._objects[key]) for key in self._groups.get(group, ())]
        found = [(name, e) for name, e in candidates if want <= e.labels.items()]
        found.sort(key=lambda item: item[0])
        return [entry.body() for _, entry in found]

    def slice_namespaces(self, kind: str, label: str | None) -> builtins.list[str]:
        """The namespaces where the cache holds objects of the slice `kind` / `label`."""
        with self._guard:
            return sorted({g[1] for g in self._groups if g[0] == kind and g[2] == label})

    def prune(
        self,
        kind: str,
        namespace: str,
        label: str | None,
        present: Iterable[str],
        listed_at: int | None,
    ) -> builtins.list[dict[str, Any]]:
        """Drop the objects of the slice in `namespace` that a fresh list (at resourceVersion
        `listed_at`) no longer holds: deleted while no watch was open, whose DELETED event no
        watch delivers (a relist after a gap reports only what it finds). An object newer than
        the list (created or changed after it, known from the watch) stays, and so does any
        whose version cannot be compared. The objects dropped, as last kept."""
        if listed_at is None:
            return []
        keep = set(present)
        dropped: builtins.list[dict[str, Any]] = []
        with self._guard:
            members = [
                key
                for group, keys in self._groups.items()
                if group[:3] == (kind, namespace, label)
                for key in keys
            ]
            for key in sorted(set(members)):
                version = self._objects[key].version
                if key[2] not in keep and version is not None and version <= listed_at:
                    entry = self._objects.pop(key)
                    self._ungroup(key, entry)
                    dropped.append(entry.body())
        return dropped

    def names(self, kind: str) -> builtins.list[tuple[str, str]]:
        """(namespace, name) of every cached object of `kind`, sorted."""
        with self._guard:
            return sorted((ns, name) for k, ns, name in self._objects if k == kind)

    def __len__(self) -> int:
        return len(self._objects)
