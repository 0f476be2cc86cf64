"""A deep copy of the emulator's objects (dicts, lists, strings, numbers, bools, None): a
pickle round trip, 6x faster than `copy.deepcopy` on a Job (80 µs -> 13 µs), which the
emulator makes several of per write (a third of its time in a burst of new pipelines).
Only the emulator's own objects go through it, never bytes from outside."""

from __future__ import annotations

import pickle
from typing import TypeVar

__all__ = ["clone"]

T = TypeVar("T")


def clone(obj: T) -> T:
    """A deep copy of `obj` (shared parts stay shared, as with copy.deepcopy)."""
    copied: T = pickle.loads(pickle.dumps(obj, pickle.HIGHEST_PROTOCOL))
    return copied
