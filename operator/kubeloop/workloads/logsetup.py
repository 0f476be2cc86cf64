"""How a workload container's process logs: one line per record at the level of
KUBELOOP_LOG_LEVEL (INFO by default), text or, with KUBELOOP_LOG_FORMAT=json, the operator's
JSON lines (kubeloop.logformat), which the operator passes to every workload pod it builds."""

from __future__ import annotations

import logging
import os

from kubeloop.logformat import JsonLineFormatter, parse_format, parse_level

__all__ = ["configure_logging"]


def configure_logging(*, force: bool = False) -> None:
    """Configure the root logger of a trainer, data-watch, registry or model-server container
    (like `logging.basicConfig`: a no-op where the root logger has a handler already, unless
    `force`); a bad KUBELOOP_LOG_LEVEL or KUBELOOP_LOG_FORMAT stops it with a ValueError naming
    the variable."""
    level = parse_level(os.environ.get("KUBELOOP_LOG_LEVEL") or "INFO")
    json_lines = parse_format(os.environ.get("KUBELOOP_LOG_FORMAT") or "text") == "json"
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonLineFormatter()
        if json_lines
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    )
    logging.basicConfig(level=level, handlers=[handler], force=force)
