"""Which Events are worth a request: client-go's dedupe and the Ready condition's Events."""

from __future__ import annotations

import pytest

from kubeloop.decide.events import DEDUPE_SECONDS, correlation, ready_event


@pytest.mark.parametrize(
    ("last_posted_at", "now", "expected"),
    [
        (None, 100.0, "post"),  # never posted: a new Event
        (100.0, 100.0, "patch"),  # the same Event again at once: its count goes up
        (100.0, 100.0 + DEDUPE_SECONDS - 1, "patch"),  # still inside the window
        (100.0, 100.0 + DEDUPE_SECONDS, "post"),  # the window has passed: a new Event
        (100.0, 50.0, "post"),  # a clock that went back: do not trust the old one
    ],
)
def test_correlation(last_posted_at: float | None, now: float, expected: str) -> None:
    assert correlation(last_posted_at, now) == expected


@pytest.mark.parametrize(
    ("first", "changed", "explained", "expected"),
    [
        (True, True, False, False),  # a new pipeline's first Ready: the condition says it
        (True, True, True, False),
        (False, True, False, True),  # a transition nothing else said: post it
        (False, True, True, False),  # the verdict / the registry read said it already
        (False, False, False, False),  # no change: nothing to post
        (False, False, True, False),
    ],
)
def test_ready_event(first: bool, changed: bool, explained: bool, expected: bool) -> None:
    assert ready_event(first=first, changed=changed, explained=explained) is expected
