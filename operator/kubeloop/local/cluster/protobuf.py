"""The few protobuf request bodies kubectl sends that the local API reads.

kubectl's typed clients (what `kubectl create job`, `create namespace` or `auth can-i` use)
send `application/vnd.kubernetes.protobuf`: the 4 bytes `k8s\\0`, then a `runtime.Unknown`
(typeMeta, raw) whose `raw` is the object in the Kubernetes protobuf schema. The emulator stores
JSON, and decoding every built-in kind's schema is out of scope, so this reads only:

- the envelope (`apiVersion`, `kind`, the raw message);
- `ObjectMeta` (name, generateName, namespace, labels, annotations, ownerReferences,
  finalizers), field 1 of every object;
- a `SelfSubjectAccessReview`'s `spec.resourceAttributes` / `nonResourceAttributes`.

Field numbers are those of k8s.io/apimachinery/pkg/runtime/generated.proto,
k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto and k8s.io/api/authorization/v1/
generated.proto. A body that is not such an envelope raises `ProtobufError`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MAGIC", "ProtobufError", "decode_envelope", "object_meta", "review_spec"]

MAGIC = b"k8s\x00"

Fields = dict[int, list[bytes | int]]


class ProtobufError(ValueError):
    """A body that is not the Kubernetes protobuf encoding this module reads."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ProtobufError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def fields(data: bytes) -> Fields:
    """The message's fields by number: varints as int, length-delimited ones as bytes."""
    out: Fields = {}
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        value: bytes | int
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            size, pos = _varint(data, pos)
            if pos + size > len(data):
                raise ProtobufError("truncated field")
            value, pos = data[pos : pos + size], pos + size
        elif wire == 1:
            value, pos = int.from_bytes(data[pos : pos + 8], "little"), pos + 8
        elif wire == 5:
            value, pos = int.from_bytes(data[pos : pos + 4], "little"), pos + 4
        else:
            raise ProtobufError(f"wire type {wire} is not read")
        out.setdefault(number, []).append(value)
    return out


def _str(found: Fields, number: int) -> str:
    values = found.get(number) or [b""]
    value = values[-1]
    return value.decode() if isinstance(value, bytes) else str(value)


def _msg(found: Fields, number: int) -> Fields:
    value = (found.get(number) or [b""])[-1]
    return fields(value) if isinstance(value, bytes) else {}


def _map(found: Fields, number: int) -> dict[str, str]:
    out = {}
    for entry in found.get(number) or []:
        if isinstance(entry, bytes):
            pair = fields(entry)
            out[_str(pair, 1)] = _str(pair, 2)
    return out


def decode_envelope(body: bytes) -> tuple[str, str, bytes]:
    """(apiVersion, kind, raw object message) of a protobuf request body."""
    if not body.startswith(MAGIC):
        raise ProtobufError("no k8s protobuf magic prefix")
    unknown = fields(body[len(MAGIC) :])
    type_meta = _msg(unknown, 1)
    raw = (unknown.get(2) or [b""])[-1]
    if not isinstance(raw, bytes):
        raise ProtobufError("runtime.Unknown.raw is not bytes")
    return _str(type_meta, 1), _str(type_meta, 2), raw


def object_meta(raw: bytes) -> dict[str, Any]:
    """The object's metadata (field 1), the fields a client sets on create."""
    meta = _msg(fields(raw), 1)
    out: dict[str, Any] = {}
    for key, number in (("name", 1), ("generateName", 2), ("namespace", 3)):
        if _str(meta, number):
            out[key] = _str(meta, number)
    for key, number in (("labels", 11), ("annotations", 12)):
        if values := _map(meta, number):
            out[key] = values
    owners = []
    for entry in meta.get(13) or []:
        if not isinstance(entry, bytes):
            continue
        ref = fields(entry)
        owner: dict[str, Any] = {
            "apiVersion": _str(ref, 5),
            "kind": _str(ref, 1),
            "name": _str(ref, 3),
            "uid": _str(ref, 4),
        }
        for key, number in (("controller", 6), ("blockOwnerDeletion", 7)):
            if number in ref:
                owner[key] = bool(ref[number][-1])
        owners.append(owner)
    if owners:
        out["ownerReferences"] = owners
    if finalizers := [v.decode() for v in meta.get(14) or [] if isinstance(v, bytes)]:
        out["finalizers"] = finalizers
    return out


def review_spec(raw: bytes) -> dict[str, Any]:
    """A SelfSubjectAccessReview's spec (field 2): resource or non-resource attributes."""
    spec = _msg(fields(raw), 2)
    out: dict[str, Any] = {}
    if 1 in spec:
        attrs = _msg(spec, 1)
        names = ("namespace", "verb", "group", "version", "resource", "subresource", "name")
        out["resourceAttributes"] = {
            key: _str(attrs, i) for i, key in enumerate(names, start=1) if _str(attrs, i)
        }
    if 2 in spec:
        attrs = _msg(spec, 2)
        out["nonResourceAttributes"] = {
            key: _str(attrs, i) for i, key in enumerate(("path", "verb"), start=1)
        }
    return out
