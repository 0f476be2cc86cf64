"""The operator's one call to the Pushgateway: delete a monitor's group.

A DriftMonitor's checks push its drift metrics to the Pushgateway, which keeps the last push
forever; deleted or suspended, the monitor would go on alerting with its last values. The
operator deletes the group then. A Pushgateway it cannot reach is logged, never retried in a
loop and never holds a deletion: the group is only stale metrics.
"""

from __future__ import annotations

import logging

from prometheus_client import delete_from_gateway

from kubeloop.api.monitor import PUSHGATEWAY_JOB, pushgateway_group

__all__ = ["delete_group"]

log = logging.getLogger("kubeloop.pushgateway")


def delete_group(url: str, namespace: str, monitor: str) -> bool:
    """Delete the monitor's group at `url` (no-op without a URL); True when it is gone."""
    if not url:
        return False
    try:
        delete_from_gateway(
            url, job=PUSHGATEWAY_JOB, grouping_key=pushgateway_group(namespace, monitor), timeout=5
        )
    except OSError as exc:  # URLError, HTTPError, timeouts
        log.warning(
            "could not delete the Pushgateway group of DriftMonitor %s/%s at %s: %s",
            namespace, monitor, url, exc,
        )  # fmt: skip
        return False
    return True
