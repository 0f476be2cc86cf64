"""Events: what a decision asks the controller to post, and which Events are worth a request.

- `EventIntent`: an Event a decision asks the controller to post on the object it decided for;
- `correlation`: client-go's EventCorrelator, its dedupe part: an Event the same as one posted a
  short while ago (same object, type, reason and message) is not posted again, the earlier
  one's count goes up (one PATCH);
- `ready_event`: whether a change of an object's Ready condition is a transition to post as an
  Event of its own, or is said already.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEDUPE_SECONDS", "EventIntent", "correlation", "ready_event"]

# client-go's EventCorrelator keeps a seen Event this long (its aggregation window too).
DEDUPE_SECONDS = 600.0


@dataclass(frozen=True)
class EventIntent:
    """`reason` (CamelCase) and `message` of one Event; `warning` makes it type Warning."""

    reason: str
    message: str
    warning: bool = False


def correlation(last_posted_at: float | None, now: float, window: float = DEDUPE_SECONDS) -> str:
    """How to send an Event the same as one posted at `last_posted_at` (None: none known):
    `"patch"` the earlier Event's count while it is younger than `window` seconds, else
    `"post"` a new one."""
    if last_posted_at is not None and 0 <= now - last_posted_at < window:
        return "patch"
    return "post"


def ready_event(*, first: bool, changed: bool, explained: bool) -> bool:
    """Whether the Ready condition's change is posted as an Event (its reason and message).

    `first`: the condition was not there before (a new object: no transition, and the condition
    itself says it); `changed`: its status or reason changed; `explained`: the same pass posted
    another Event already (the run's verdict, the registry read's result), which says why Ready
    moved: a second Event would only repeat it.
    """
    return changed and not first and not explained
