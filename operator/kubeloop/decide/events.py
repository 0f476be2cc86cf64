"""An Event a decision asks the controller to post on the object it decided for."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["EventIntent"]


@dataclass(frozen=True)
class EventIntent:
    """`reason` (CamelCase) and `message` of one Event; `warning` makes it type Warning."""

    reason: str
    message: str
    warning: bool = False
