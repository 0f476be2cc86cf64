"""Leader election on a coordination.k8s.io/v1 Lease: take it, renew it, wait, or stop acting.

Two replicas of the operator share one Lease; only its holder reconciles. The clocks are
arguments (`now`: a monotonic reading in seconds, `wall`: the time written into the Lease), so
every decision is table-tested with an injected clock. As in client-go's leader election:

- another holder's lease is judged expired on the reader's own monotonic clock, from the moment
  it first saw the lease's current record (holder, renewTime, transitions): two nodes' wall
  clocks may disagree, so `renewTime` is written for people, never compared across processes;
- the holder's right to act lasts `renew_deadline` from the start of its last successful renew
  (the API server applied it at or after that moment), shorter than the lease: a leader that
  cannot renew stops acting before any follower may take over (fencing).
"""

from __future__ import annotations

import datetime
import enum
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

__all__ = [
    "Action",
    "LeaseRecord",
    "LeaseTiming",
    "Observation",
    "Step",
    "expired",
    "may_act",
    "next_step",
    "observe",
    "read_lease",
    "released",
    "retry_in",
]

# RFC 3339 with microseconds: a Lease's acquireTime/renewTime are MicroTime.
_MICRO = "%Y-%m-%dT%H:%M:%S.%fZ"


@dataclass(frozen=True)
class LeaseTiming:
    """How long a lease lasts and how often its holder renews it (seconds)."""

    duration: int = 10  # leaseDurationSeconds written into the Lease
    renew: float = 3.0  # the holder renews this often

    @property
    def renew_deadline(self) -> float:
        """How long after its last successful renew the holder may still act."""
        return self.duration - self.renew

    @property
    def retry(self) -> float:
        """How often a follower looks at the Lease, and a failed renew is tried again."""
        return self.renew / 2

    def problems(self) -> list[str]:
        """What makes these timings unsafe, each in a sentence; empty: fine."""
        out = []
        if self.duration < 1:
            out.append(f"the lease duration must be at least 1 s, not {self.duration}")
        if not 0 < self.renew <= self.duration / 2:
            out.append(
                f"the renew period ({self.renew} s) must be above 0 and at most half the lease "
                f"duration ({self.duration} s), so a failed renew is tried again before the "
                "holder stops acting"
            )
        return out


@dataclass(frozen=True)
class LeaseRecord:
    """A Lease's spec (and resourceVersion, which a write must send back)."""

    holder: str = ""  # "" = released: anyone may take it at once
    duration_seconds: int = 15
    acquire_time: str | None = None
    renew_time: str | None = None
    transitions: int = 0
    resource_version: str | None = None

    @property
    def identity(self) -> tuple[str, int, str | None, str | None, int]:
        """What tells one record from the next (the resourceVersion changes with any write)."""
        return (
            self.holder,
            self.duration_seconds,
            self.acquire_time,
            self.renew_time,
            self.transitions,
        )

    def spec(self) -> dict[str, Any]:
        """The Lease's spec as the API takes it."""
        spec: dict[str, Any] = {
            "holderIdentity": self.holder,
            "leaseDurationSeconds": self.duration_seconds,
            "leaseTransitions": self.transitions,
        }
        if self.acquire_time:
            spec["acquireTime"] = self.acquire_time
        if self.renew_time:
            spec["renewTime"] = self.renew_time
        return spec


def read_lease(obj: Mapping[str, Any] | None) -> LeaseRecord | None:
    """The record of a Lease object; None when there is no Lease."""
    if obj is None:
        return None
    spec = obj.get("spec") or {}
    return LeaseRecord(
        holder=str(spec.get("holderIdentity") or ""),
        duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
        acquire_time=spec.get("acquireTime"),
        renew_time=spec.get("renewTime"),
        transitions=int(spec.get("leaseTransitions") or 0),
        resource_version=(obj.get("metadata") or {}).get("resourceVersion"),
    )


@dataclass(frozen=True)
class Observation:
    """A record as last read, and when (monotonic) it was first seen unchanged."""

    record: LeaseRecord
    seen_at: float


def observe(previous: Observation | None, record: LeaseRecord, now: float) -> Observation:
    """The observation after reading `record` at `now`: the clock restarts when it changed."""
    if previous is not None and previous.record.identity == record.identity:
        return Observation(record, previous.seen_at)
    return Observation(record, now)


def expired(observation: Observation, now: float) -> bool:
    """Whether the observed holder's lease has run out: released, or unchanged for as long as
    the holder said it lasts."""
    record = observation.record
    return not record.holder or now >= observation.seen_at + record.duration_seconds


class Action(enum.Enum):
    """What an elector does after reading the Lease."""

    CREATE = "create"  # no Lease yet: create it, held by us
    TAKE = "take"  # released or expired: write it with us as the holder
    RENEW = "renew"  # ours: write a new renewTime
    WAIT = "wait"  # another's, still valid: look again later


@dataclass(frozen=True)
class Step:
    """The next step: the action, the record to write (not for WAIT), the observation to keep,
    and how long to wait before the next look (seconds)."""

    action: Action
    write: LeaseRecord | None
    observation: Observation | None
    wait: float


def _micro(wall: datetime.datetime) -> str:
    return wall.astimezone(datetime.UTC).strftime(_MICRO)


def next_step(  # noqa: PLR0917 (the inputs of one decision)
    lease: LeaseRecord | None,
    previous: Observation | None,
    identity: str,
    timing: LeaseTiming,
    now: float,
    wall: datetime.datetime,
) -> Step:
    """Decide what to do with the Lease just read (`lease`; None: there is none).

    A follower looks again at the moment the lease would expire, or after `timing.retry`,
    whichever comes first, so it takes over as soon as it may.
    """
    stamp = _micro(wall)
    duration = timing.duration
    if lease is None:
        mine = LeaseRecord(identity, duration, stamp, stamp, 0)
        return Step(Action.CREATE, mine, None, timing.renew)
    seen = observe(previous, lease, now)
    if lease.holder == identity:
        renewed = replace(lease, duration_seconds=duration, renew_time=stamp)
        if not renewed.acquire_time:
            renewed = replace(renewed, acquire_time=stamp)
        return Step(Action.RENEW, renewed, seen, timing.renew)
    if expired(seen, now):
        taken = replace(
            lease,
            holder=identity,
            duration_seconds=duration,
            acquire_time=stamp,
            renew_time=stamp,
            transitions=lease.transitions + 1,
        )
        return Step(Action.TAKE, taken, seen, timing.renew)
    left = seen.seen_at + lease.duration_seconds - now
    return Step(Action.WAIT, None, seen, max(0.0, min(timing.retry, left)))


def released(lease: LeaseRecord, wall: datetime.datetime) -> LeaseRecord:
    """The record a holder writes when it stops on purpose (SIGTERM): no holder, so a
    follower takes over at its next look instead of waiting out the lease."""
    return replace(lease, holder="", duration_seconds=1, renew_time=_micro(wall))


def may_act(renewed_at: float | None, now: float, timing: LeaseTiming) -> bool:
    """Whether a holder whose last successful renew started at `renewed_at` may still act."""
    return renewed_at is not None and now < renewed_at + timing.renew_deadline


def retry_in(renewed_at: float | None, now: float, timing: LeaseTiming) -> float:
    """When a holder whose renew failed tries again: after `timing.retry`, or at the moment it
    must stop acting if that comes first (a last try; failing it, the holder stops)."""
    if renewed_at is None:
        return timing.retry
    return max(0.0, min(timing.retry, renewed_at + timing.renew_deadline - now))
