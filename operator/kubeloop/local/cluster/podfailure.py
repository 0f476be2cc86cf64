"""A Job's `spec.podFailurePolicy`, as the real Job controller applies it to a failed pod.

Rules are tried in order; the first whose `onExitCodes` matches the pod decides: `FailJob` ends
the Job at once (condition reason `PodFailurePolicy`), `Ignore` does not count the pod against
`backoffLimit`, `Count` counts it (as with no rule). `onExitCodes` matches a terminated
container, init containers included, with a non-zero exit code (`containerName`, when given,
names it) whose code is `In` (or `NotIn`) `values`. `onPodConditions` rules (disruptions) never
match here: nothing evicts a local pod.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["PolicyMatch", "match_pod_failure"]


@dataclass(frozen=True)
class PolicyMatch:
    """The rule that matched a failed pod: its action, index, and the container and code."""

    action: str
    index: int
    container: str
    exit_code: int

    def message(self, pod: str) -> str:
        """The Job condition's message, worded as the real controller words it."""
        return (
            f"Container {self.container} for pod {pod} failed with exit code {self.exit_code} "
            f"matching {self.action} rule at index {self.index}"
        )


def match_pod_failure(
    policy: Mapping[str, Any] | None, exits: Sequence[tuple[str, int | None]]
) -> PolicyMatch | None:
    """The first rule of `policy` that the failed pod's containers match; `exits` is each
    container's (name, exit code or None), init containers first. None: no rule matched."""
    for index, rule in enumerate((policy or {}).get("rules") or []):
        codes = rule.get("onExitCodes")
        if not codes:
            continue
        values = {int(v) for v in codes.get("values") or []}
        wanted = codes.get("containerName")
        for name, code in exits:
            if code in (None, 0) or (wanted and name != wanted):
                continue
            inside = code in values
            if inside == (codes.get("operator", "In") == "In"):
                return PolicyMatch(str(rule.get("action")), index, name, int(code))
    return None
