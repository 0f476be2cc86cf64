"""Server-side apply and field ownership (`metadata.managedFields`), as far as kubeloop needs.

What a real API server does, reduced to the fields this project's objects have:

- every field (a path to a leaf: a scalar, a list, or an empty map) has owners, each a field
  manager with an operation: `Apply` (`kubectl apply --server-side`, a PATCH of type
  `application/apply-patch+yaml`) or `Update` (any other write that names a `fieldManager`,
  e.g. kubectl's `kubectl-client-side-apply`, `kubectl-patch`, `kubectl-edit`);
- an apply sets the fields of its configuration; one another manager owns with a different value
  is a conflict (409 listing them) unless `force=true`, which takes the field over; owning the
  same value is shared ownership;
- a field the applier owned before and leaves out of its configuration is removed, unless
  another manager still owns it;
- an Update takes over the fields it changed from every other manager.

Simplifications (documented gaps): lists are atomic (owned whole, as a CRD list without
`x-kubernetes-list-type` is; set and map lists are granular on a real server); the status of a
kind with the status subresource is neither applied nor tracked; ownership is recorded only for
writes that name a `fieldManager` (kubectl and the operator always do; in-process writes and
kopf do not). An apply that changes nothing is a no-op: its manager's entry keeps its time.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from kubeloop.local.cluster.clone import clone

__all__ = [
    "ApplyConflictError",
    "Conflict",
    "apply",
    "decode",
    "encode",
    "field_paths",
    "record_update",
]

Path = tuple[str, ...]

# Server-set or identifying fields: never owned.
_IGNORED: frozenset[Path] = frozenset(
    {("apiVersion",), ("kind",)}
    | {
        ("metadata", key)
        for key in (
            "name",
            "namespace",
            "uid",
            "resourceVersion",
            "generation",
            "creationTimestamp",
            "deletionTimestamp",
            "managedFields",
            "selfLink",
        )
    }
)
_MISSING = object()


@dataclass(frozen=True)
class Conflict:
    """A field the applier sets to another value than the manager that owns it."""

    manager: str
    api_version: str
    path: Path

    def __str__(self) -> str:
        return f'conflict with "{self.manager}" using {self.api_version}: .{".".join(self.path)}'


class ApplyConflictError(Exception):
    """An apply that would change fields other managers own (409 unless forced)."""

    def __init__(self, conflicts: list[Conflict]) -> None:
        self.conflicts = conflicts
        noun = "conflict" if len(conflicts) == 1 else "conflicts"
        super().__init__(
            f"Apply failed with {len(conflicts)} {noun}: " + "\n".join(map(str, conflicts))
        )


def _ignored(path: Path, has_status: bool) -> bool:
    return path in _IGNORED or (has_status and path[:1] == ("status",))


def field_paths(obj: Mapping[str, Any], *, has_status: bool = False) -> set[Path]:
    """The owned-field paths of an object: every leaf (scalar, list, empty map)."""

    def walk(node: Any, path: Path) -> Iterator[Path]:
        if isinstance(node, Mapping) and node:
            for key, value in node.items():
                yield from walk(value, (*path, str(key)))
        elif path:
            yield path

    return {p for p in walk(obj, ()) if not _ignored(p, has_status)}


def encode(paths: Iterable[Path]) -> dict[str, Any]:
    """Paths as a `FieldsV1` document (`{"f:spec": {"f:seed": {}}}`)."""
    out: dict[str, Any] = {}
    for path in sorted(paths):
        node = out
        for key in path:
            node = node.setdefault(f"f:{key}", {})
    return out


def decode(fields: Mapping[str, Any]) -> set[Path]:
    """The leaf paths of a `FieldsV1` document (list-item keys `k:`/`v:`/`i:` are not used)."""
    out: set[Path] = set()

    def walk(node: Mapping[str, Any], path: Path) -> None:
        children = {k: v for k, v in node.items() if k.startswith("f:")}
        if not children and path:
            out.add(path)
        for key, value in children.items():
            walk(value if isinstance(value, Mapping) else {}, (*path, key[2:]))

    walk(fields, ())
    return out


def _get(obj: Any, path: Path) -> Any:
    node = obj
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return _MISSING
        node = node[key]
    return node


def _set(obj: dict[str, Any], path: Path, value: Any) -> None:
    node = obj
    for key in path[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[path[-1]] = clone(value)


def _remove(obj: dict[str, Any], path: Path) -> None:
    """Remove a field, then the maps it leaves empty."""
    parents: list[tuple[dict[str, Any], str]] = []
    node: Any = obj
    for key in path[:-1]:
        if not isinstance(node, dict) or not isinstance(node.get(key), dict):
            return
        parents.append((node, key))
        node = node[key]
    if isinstance(node, dict):
        node.pop(path[-1], None)
    for parent, key in reversed(parents):
        if parent[key] == {}:
            del parent[key]
        else:
            break


def _overlaps(a: Path, b: Path) -> bool:
    shorter = min(len(a), len(b))
    return a[:shorter] == b[:shorter]


def _entry(
    manager: str, operation: str, api_version: str, now: str, paths: set[Path]
) -> dict[str, Any]:
    return {
        "manager": manager,
        "operation": operation,
        "apiVersion": api_version,
        "time": now,
        "fieldsType": "FieldsV1",
        "fieldsV1": encode(paths),
    }


def _entries(obj: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    return clone(list((obj or {}).get("metadata", {}).get("managedFields") or []))


def _owned(entry: Mapping[str, Any]) -> set[Path]:
    return decode(entry.get("fieldsV1") or {})


def _with_entries(obj: dict[str, Any], entries: list[dict[str, Any]]) -> dict[str, Any]:
    meta = obj.setdefault("metadata", {})
    kept = [e for e in entries if e.get("fieldsV1")]
    if kept:
        meta["managedFields"] = kept
    else:
        meta.pop("managedFields", None)
    return obj


def apply(
    current: Mapping[str, Any] | None,
    config: Mapping[str, Any],
    manager: str,
    *,
    now: str,
    force: bool = False,
    has_status: bool = False,
) -> dict[str, Any]:
    """The object after `manager` applies `config` to `current` (None: it is created).

    Raises ApplyConflictError when `config` changes fields other managers own and not `force`.
    """
    api_version = str(config.get("apiVersion", ""))
    result: dict[str, Any] = clone(dict(current)) if current else {}
    if not current:
        for key in ("apiVersion", "kind"):
            result[key] = config.get(key)
        meta = config.get("metadata", {})
        result["metadata"] = {k: meta[k] for k in ("name", "namespace") if k in meta}
    applied = field_paths(config, has_status=has_status)
    entries = _entries(current)
    mine = next(
        (e for e in entries if e.get("manager") == manager and e.get("operation") == "Apply"),
        None,
    )
    others = [e for e in entries if e is not mine]
    conflicts: list[Conflict] = []
    taken: dict[int, set[Path]] = {}
    for index, entry in enumerate(others):
        for owned in _owned(entry):
            for path in applied:
                if not _overlaps(owned, path):
                    continue
                shorter = owned if len(owned) <= len(path) else path
                if _get(config, shorter) != _get(result, shorter):
                    conflicts.append(
                        Conflict(str(entry.get("manager")), str(entry.get("apiVersion")), owned)
                    )
                    taken.setdefault(index, set()).add(owned)
                    break
    if conflicts and not force:
        raise ApplyConflictError(sorted(set(conflicts), key=lambda c: (c.manager, c.path)))
    for index, paths in taken.items():
        remaining = _owned(others[index]) - paths
        others[index]["fieldsV1"] = encode(remaining)
    still_owned = set().union(*(_owned(e) for e in others)) if others else set()
    for path in (_owned(mine) if mine else set()) - applied:
        if not any(_overlaps(path, kept) for kept in still_owned | applied):
            _remove(result, path)
    for path in applied:
        _set(result, path, _get(config, path))
    mine_now = _entry(manager, "Apply", api_version, now, applied)
    if mine is not None and not taken and _owned(mine) == applied and result == current:
        # Nothing changed: the entry keeps its time, so the apply is a no-op (no new
        # resourceVersion, no watch event), as on a real API server.
        mine_now = mine
    return _with_entries(result, [*others, mine_now])


def record_update(
    old: Mapping[str, Any] | None,
    new: dict[str, Any],
    manager: str,
    *,
    now: str,
    has_status: bool = False,
) -> dict[str, Any]:
    """`new` with managedFields after an Update by `manager`: it owns what it changed."""
    before = field_paths(old or {}, has_status=has_status)
    after = field_paths(new, has_status=has_status)
    changed = {p for p in after if _get(old or {}, p) != _get(new, p)}
    gone = before - after
    entries = _entries(old)
    for entry in entries:
        entry["fieldsV1"] = encode(
            {p for p in _owned(entry) if not any(_overlaps(p, c) for c in changed | gone)}
        )
    mine = next(
        (e for e in entries if e.get("manager") == manager and e.get("operation") == "Update"),
        None,
    )
    owned = (_owned(mine) if mine else set()) | changed
    api_version = str(new.get("apiVersion", ""))
    entries = [e for e in entries if e is not mine]
    if owned:
        entries.append(_entry(manager, "Update", api_version, now, owned))
    return _with_entries(new, entries)
