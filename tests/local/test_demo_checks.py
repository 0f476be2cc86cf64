"""Which check a demo's drift step reports (kubeloop.local.demo.scenario.new_check): its own
Job's, or a scheduled one's created after it (the example's */30 schedule firing mid-check:
when both end between two reconciles the monitor records only the newer)."""

from __future__ import annotations

from typing import Any

import pytest

from kubeloop.local.demo.scenario import new_check

EARLIER = {"churn-manual-aaaaa", "churn-run-1"}


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ({}, None),  # nothing recorded yet
        ({"lastJob": "churn-manual-aaaaa", "verdict": "NoDrift"}, None),  # the previous check
        ({"lastJob": "churn-manual-bbbbb"}, None),  # no verdict yet
        ({"lastJob": "churn-manual-bbbbb", "verdict": "Drift"}, "churn-manual-bbbbb"),  # its own
        ({"lastJob": "churn-29414400", "verdict": "Drift"}, "churn-29414400"),  # scheduled, newer
        ({"lastJob": "churn-manual-bbbbb", "verdict": "Failed"}, "churn-manual-bbbbb"),
    ],
)
def test_the_check_reported_is_the_newest_recorded_after_the_trigger(
    status: dict[str, Any], expected: str | None
) -> None:
    assert new_check(status, EARLIER) == expected
