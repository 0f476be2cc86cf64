"""How a workload container's process logs: one line per record, the level from
KUBELOOP_LOG_LEVEL (INFO by default)."""

from __future__ import annotations

import logging
import os

__all__ = ["configure_logging"]


def configure_logging() -> None:
    """Configure the root logger of a trainer, data-watch or registry container."""
    logging.basicConfig(
        level=os.environ.get("KUBELOOP_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
