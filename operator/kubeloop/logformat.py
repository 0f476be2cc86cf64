"""How kubeloop's processes log, the operator and the workload containers alike: the level and
format knobs (env KUBELOOP_LOG_LEVEL, KUBELOOP_LOG_FORMAT) and the JSON-lines format.

Standard library only: the workload images carry no logging extras, and a log pipeline needs
the same fields from every process (`time` RFC 3339 UTC, `level`, `logger`, `message`, and
`object` {kind, namespace, name} when the line is about one object).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "LOG_FORMATS",
    "LOG_LEVELS",
    "JsonLineFormatter",
    "line_fields",
    "parse_format",
    "parse_level",
]

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("text", "json")
_OBJECT_KEYS = ("kind", "namespace", "name")


def parse_level(value: str, variable: str = "KUBELOOP_LOG_LEVEL") -> str:
    """`value` as a level name (any case); a ValueError naming `variable` and the choices."""
    name = value.strip().upper()
    if name not in LOG_LEVELS:
        raise ValueError(f"{variable}={value!r}: set it to one of {', '.join(LOG_LEVELS)}")
    return name


def parse_format(value: str, variable: str = "KUBELOOP_LOG_FORMAT") -> str:
    """`value` as a format name (any case); a ValueError naming `variable` and the choices."""
    name = value.strip().lower()
    if name not in LOG_FORMATS:
        raise ValueError(f"{variable}={value!r}: set it to one of {', '.join(LOG_FORMATS)}")
    return name


def _object(record: logging.LogRecord) -> dict[str, str] | None:
    # kubeloop's own lines pass extra={"object": ...}; kopf's per-object lines carry `k8s_ref`.
    ref = getattr(record, "object", None) or getattr(record, "k8s_ref", None)
    if not isinstance(ref, dict):
        return None
    found = {k: str(ref[k]) for k in _OBJECT_KEYS if ref.get(k)}
    return found or None


def line_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields of one JSON line (without the traceback, which needs a formatter)."""
    stamp = datetime.fromtimestamp(record.created, tz=UTC)
    fields: dict[str, Any] = {
        "time": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "level": record.levelname,
        "logger": record.name,
        "message": record.getMessage(),
    }
    obj = _object(record)
    if obj:
        fields["object"] = obj
    reason = getattr(record, "reason", None)
    if reason:
        fields["reason"] = str(reason)
    return fields


class JsonLineFormatter(logging.Formatter):
    """One JSON object a line (a traceback goes into `exception`, never across lines)."""

    def format(self, record: logging.LogRecord) -> str:
        fields = line_fields(record)
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        return json.dumps(fields, default=str, ensure_ascii=False)
