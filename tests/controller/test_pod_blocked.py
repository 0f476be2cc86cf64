"""pod_blocked: which kubelet waiting states stop a run until a person acts, table-tested."""

from __future__ import annotations

from typing import Any

import pytest

from kubeloop.controller.status import pod_blocked


def _pod(name: str, *, waiting: dict[str, str] | None = None, init: bool = False) -> dict[str, Any]:
    state = {"waiting": waiting} if waiting is not None else {"running": {}}
    field = "initContainerStatuses" if init else "containerStatuses"
    return {"metadata": {"name": name}, "status": {"phase": "Pending", field: [{"state": state}]}}


SECRET = {"reason": "CreateContainerConfigError", "message": 'secret "s3" not found'}


@pytest.mark.parametrize(
    ("pods", "expected"),
    [
        ([], None),
        ([_pod("a")], None),
        ([_pod("a", waiting={"reason": "ContainerCreating"})], None),
        ([_pod("a", waiting={"reason": "PodInitializing"})], None),
        (
            [_pod("a", waiting=SECRET)],
            'pod a cannot start: CreateContainerConfigError: secret "s3" not found',
        ),
        (
            [_pod("a", waiting={"reason": "ImagePullBackOff"})],
            "pod a cannot start: ImagePullBackOff",
        ),
        (
            [_pod("a", waiting=SECRET, init=True)],
            'pod a cannot start: CreateContainerConfigError: secret "s3" not found',
        ),
        # Several pods (an Indexed Job): the first blocked one by name, whatever the order.
        (
            [_pod("b", waiting={"reason": "ErrImagePull"}), _pod("a", waiting=SECRET)],
            'pod a cannot start: CreateContainerConfigError: secret "s3" not found',
        ),
        ([{"metadata": {"name": "a"}}], None),  # no status yet
    ],
)
def test_pod_blocked(pods: list[dict[str, Any]], expected: str | None) -> None:
    assert pod_blocked(pods) == expected
