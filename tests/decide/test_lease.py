"""Leader election decisions with an injected clock: create, take, renew, wait, fence."""

from __future__ import annotations

import datetime

import pytest

from kubeloop.decide.lease import (
    Action,
    LeaseRecord,
    LeaseTiming,
    Observation,
    expired,
    may_act,
    next_step,
    observe,
    read_lease,
    released,
    retry_in,
)

ME, OTHER = "kubeloop-7d9f-a", "kubeloop-7d9f-b"
WAIT = Action.WAIT
TIMING = LeaseTiming(duration=15, renew=5.0)  # deadline 10 s, retry 2.5 s
WALL = datetime.datetime(2026, 11, 30, 20, 0, 0, 250000, tzinfo=datetime.UTC)
STAMP = "2026-11-30T20:00:00.250000Z"
HELD = LeaseRecord(OTHER, 15, "2026-11-30T19:00:00.000000Z", "2026-11-30T19:59:58.000000Z", 3)


def _seen(record: LeaseRecord, at: float) -> Observation:
    return Observation(record, at)


@pytest.mark.parametrize(
    ("lease", "previous", "now", "action", "holder", "transitions", "wait"),
    [
        # no Lease: create it, held by us
        (None, None, 100.0, Action.CREATE, ME, 0, 5.0),
        # another's, first seen now: wait a retry period, not the whole lease
        (HELD, None, 100.0, Action.WAIT, None, None, 2.5),
        # unchanged for 14 s of its 15: look again at the moment it expires
        (HELD, _seen(HELD, 86.0), 100.0, Action.WAIT, None, None, 1.0),
        # unchanged for 15 s: expired, take it (one more transition)
        (HELD, _seen(HELD, 85.0), 100.0, Action.TAKE, ME, 4, 5.0),
        (HELD, _seen(HELD, 10.0), 100.0, Action.TAKE, ME, 4, 5.0),
        # renewed since we last looked (renewTime moved): the clock restarts, however old
        (HELD, _seen(LeaseRecord(OTHER, 15, None, "r0", 3), 9.0), 100.0, WAIT, None, None, 2.5),
        # a new holder since (a takeover by a third replica): wait for it in turn
        (HELD, _seen(LeaseRecord("c", 15, None, None, 2), 9.0), 100.0, WAIT, None, None, 2.5),
        # only the resourceVersion differs (same record): the clock keeps running
        (
            LeaseRecord(**{**HELD.__dict__, "resource_version": "9"}),
            _seen(HELD, 80.0),
            100.0,
            Action.TAKE,
            ME,
            4,
            5.0,
        ),
        # released (no holder): take it at once, even if just seen
        (LeaseRecord("", 1, None, None, 3), None, 100.0, Action.TAKE, ME, 4, 5.0),
        # ours: renew, keeping acquireTime and transitions
        (LeaseRecord(ME, 15, "a", "r", 2), None, 100.0, Action.RENEW, ME, 2, 5.0),
        # ours after a restart of this very pod (same name): renew, no new transition
        (LeaseRecord(ME, 15, "a", "r", 2), _seen(HELD, 10.0), 100.0, Action.RENEW, ME, 2, 5.0),
        # the holder's own duration counts, not ours: a 40 s lease is not expired at 15 s
        (
            LeaseRecord(OTHER, 40, None, "r", 1),
            _seen(LeaseRecord(OTHER, 40, None, "r", 1), 80.0),
            100.0,
            Action.WAIT,
            None,
            None,
            2.5,
        ),
    ],
)  # fmt: skip
def test_next_step(  # noqa: PLR0917 (one table row)
    lease: LeaseRecord | None,
    previous: Observation | None,
    now: float,
    action: Action,
    holder: str | None,
    transitions: int | None,
    wait: float,
) -> None:
    step = next_step(lease, previous, ME, TIMING, now, WALL)
    assert step.action is action
    assert step.wait == pytest.approx(wait)
    if holder is None:
        assert step.write is None
        return
    assert step.write is not None
    assert step.write.holder == holder and step.write.transitions == transitions
    assert step.write.renew_time == STAMP and step.write.duration_seconds == 15
    if action is Action.RENEW:
        assert lease is not None and step.write.acquire_time == lease.acquire_time
    else:
        assert step.write.acquire_time == STAMP


def test_a_write_sends_back_the_resource_version_it_read() -> None:
    lease = read_lease({"metadata": {"resourceVersion": "41"}, "spec": {"holderIdentity": OTHER}})
    assert lease is not None
    step = next_step(lease, Observation(lease, 0.0), ME, TIMING, 100.0, WALL)
    assert step.write is not None and step.write.resource_version == "41"


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (None, None),
        ({"spec": {}}, LeaseRecord("", 0, None, None, 0)),
        (
            {
                "metadata": {"resourceVersion": "7"},
                "spec": {
                    "holderIdentity": ME,
                    "leaseDurationSeconds": 15,
                    "acquireTime": "a",
                    "renewTime": "r",
                    "leaseTransitions": 2,
                },
            },
            LeaseRecord(ME, 15, "a", "r", 2, "7"),
        ),
    ],
)
def test_read_lease(obj: dict[str, object] | None, expected: LeaseRecord | None) -> None:
    assert read_lease(obj) == expected


@pytest.mark.parametrize(
    ("record", "seen_at", "now", "expected"),
    [
        (HELD, 100.0, 100.0, False),
        (HELD, 100.0, 114.999, False),
        (HELD, 100.0, 115.0, True),  # exactly the duration: expired
        (LeaseRecord("", 15), 100.0, 100.0, True),  # released
        (LeaseRecord(OTHER, 0), 100.0, 100.0, True),  # a zero-length lease
    ],
)
def test_expired(record: LeaseRecord, seen_at: float, now: float, expected: bool) -> None:
    assert expired(Observation(record, seen_at), now) is expected


def test_observe_restarts_the_clock_only_when_the_record_changes() -> None:
    first = observe(None, HELD, 10.0)
    assert first.seen_at == 10.0
    assert observe(first, HELD, 20.0).seen_at == 10.0
    renewed = LeaseRecord(**{**HELD.__dict__, "renew_time": "later"})
    assert observe(first, renewed, 20.0).seen_at == 20.0


@pytest.mark.parametrize(
    ("renewed_at", "now", "acting", "retry"),
    [
        (None, 0.0, False, 2.5),  # never renewed: never acts
        (100.0, 100.0, True, 2.5),
        (100.0, 109.0, True, 1.0),  # 1 s left: the last try comes at the deadline
        (100.0, 109.999, True, 0.001),
        (100.0, 110.0, False, 0.0),  # the deadline (duration - renew): stop acting
        (100.0, 114.0, False, 0.0),  # still 1 s before any follower may take over
    ],
)  # fmt: skip
def test_fencing(renewed_at: float | None, now: float, acting: bool, retry: float) -> None:
    assert may_act(renewed_at, now, TIMING) is acting
    assert retry_in(renewed_at, now, TIMING) == pytest.approx(retry)


def test_a_leader_stops_acting_before_a_follower_may_take_over() -> None:
    """The follower's clock starts no earlier than the renew's start: its takeover comes after
    the holder's deadline, whatever the timings (that `problems` accepts)."""
    for timing in (TIMING, LeaseTiming(3, 1.0), LeaseTiming(2, 1.0), LeaseTiming(60, 2.0)):
        assert not timing.problems()
        renewed_at = 50.0
        follower_sees = Observation(LeaseRecord(OTHER, timing.duration), renewed_at)
        deadline = renewed_at + timing.renew_deadline
        assert not may_act(renewed_at, deadline, timing)
        assert not expired(follower_sees, deadline)
        assert timing.renew_deadline >= timing.renew  # a failed renew is tried again


@pytest.mark.parametrize(
    ("timing", "problem"),
    [
        (LeaseTiming(15, 5.0), None),
        (LeaseTiming(0, 5.0), "at least 1 s"),
        (LeaseTiming(15, 0.0), "above 0"),
        (LeaseTiming(15, 8.0), "at most half the lease duration"),
    ],
)
def test_timing_problems(timing: LeaseTiming, problem: str | None) -> None:
    found = " ".join(timing.problems())
    assert (problem in found) if problem else not found


def test_released_has_no_holder_and_a_short_lease() -> None:
    record = released(LeaseRecord(ME, 15, "a", "r", 2, "9"), WALL)
    assert (record.holder, record.duration_seconds, record.renew_time) == ("", 1, STAMP)
    assert (record.transitions, record.resource_version) == (2, "9")
    assert next_step(record, None, OTHER, TIMING, 0.0, WALL).action is Action.TAKE
