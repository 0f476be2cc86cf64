"""How a canary step becomes pod counts, and which steps the replica bounds can serve.

One Service spreads requests over the ready pods of both Deployments, so the canary's share of
traffic is its share of pods: canary / (canary + stable). The rule:

- The stable Deployment keeps its replica count (`spec.replicas`, or the HPA's count): a canary
  never takes capacity from the version that serves; canary pods are added beside it.
- The canary gets the pod count, from 1 to `most`, whose share is closest to the step (a tie
  goes to fewer pods). `most` is the most pods the stable Deployment may have
  (`autoscaling.maxReplicas`, else `spec.replicas`), so a canary never outgrows the stable side
  and the pods during a rollout at most double; before the last step a canary serves at most
  half the traffic.
- A step is servable when that closest share is within TOLERANCE points of it for every stable
  count the bounds allow: `spec.replicas`, or each of `minReplicas..maxReplicas` with an HPA,
  whatever the HPA does. Admission refuses the others. The last step, 100, is the promotion
  (the stable Deployment takes the new version), not a split. With `replicas: 0` there is no
  traffic to split and the canary has no pods.

Both admission layers state the same rule: `servable_steps_cel()` for the CRD and
`first_unservable_step()` for pydantic; a property test checks that they agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

__all__ = [
    "TOLERANCE",
    "CanarySplit",
    "StepMiss",
    "first_unservable_step",
    "servable_steps_cel",
    "split_step",
    "stable_counts",
    "unservable_step_message",
    "unservable_step_message_cel",
]

TOLERANCE = 10  # percentage points a step's served share may differ from the declared step


@dataclass(frozen=True)
class CanarySplit:
    """Pod counts for one canary step, and the share of traffic they give the canary."""

    canary: int
    stable: int

    @property
    def share(self) -> int:
        """Percent of serving pods, so of requests, on the canary (rounded half up)."""
        pods = self.canary + self.stable
        return (200 * self.canary + pods) // (2 * pods) if pods else 0

    def error(self, percent: int) -> Fraction:
        """How far the exact share is from `percent`, in percentage points."""
        pods = self.canary + self.stable
        return Fraction(abs(100 * self.canary - percent * pods), pods) if pods else Fraction(0)

    def misses(self, percent: int) -> bool:
        """Whether the share is more than TOLERANCE points from `percent`."""
        pods = self.canary + self.stable
        return abs(100 * self.canary - percent * pods) > TOLERANCE * pods


def stable_counts(replicas: int, autoscaling: tuple[int, int] | None = None) -> range:
    """Every replica count the stable Deployment may have: `spec.replicas`, or the HPA's
    `minReplicas..maxReplicas`. Its largest is also the most pods a canary gets."""
    if autoscaling is not None:
        fewest, most = autoscaling
        return range(fewest, most + 1)  # empty when min > max (a rule of its own refuses it)
    return range(replicas, replicas + 1)


def split_step(stable: int, percent: int, most: int) -> CanarySplit:
    """Canary pods beside `stable` stable pods whose share comes closest to `percent`.

    The stable count is kept; the canary gets 1..`most` pods (ties: fewer). `percent` is a
    step before the last (1..99). No stable pods (scaled to zero): no canary pods either.
    """
    if not 0 < percent < 100:
        raise ValueError(f"a canary split is for steps of 1..99 percent, not {percent}")
    if stable <= 0:
        return CanarySplit(0, 0)
    # The share c/(c+stable) grows with c: the closest count is next to the exact one.
    exact = percent * stable // (100 - percent)
    fewer, more = (CanarySplit(min(max(c, 1), max(most, 1)), stable) for c in (exact, exact + 1))
    return more if more.error(percent) < fewer.error(percent) else fewer


@dataclass(frozen=True)
class StepMiss:
    """A step the replica bounds cannot serve, with the closest split where it fails."""

    index: int
    percent: int
    split: CanarySplit
    most: int


def first_unservable_step(steps: Sequence[int], counts: range) -> StepMiss | None:
    """The first step (before 100) whose closest split misses it by more than TOLERANCE
    points at some stable count in `counts`; None when every step is servable."""
    if not counts:
        return None
    most = counts[-1]
    for index, percent in enumerate(steps):
        if not 0 < percent < 100:
            continue
        for stable in counts:
            split = split_step(stable, percent, most)
            if split.misses(percent):
                return StepMiss(index, percent, split, most)
    return None


def _fewest_stable_for(percent: int) -> int | None:
    """The fewest stable pods with which a canary can serve `percent` (None: no count can)."""
    for stable in range(1, 1001):
        if not split_step(stable, percent, stable).misses(percent):
            return stable
    return None


def unservable_step_message(miss: StepMiss, autoscaling: bool) -> str:
    """What pydantic says about an unservable step: which step, what it would get, the fix."""
    split = miss.split
    field = "autoscaling.minReplicas" if autoscaling else "replicas"
    head = (
        f"spec.rollout.canary.steps[{miss.index}]: a {miss.percent}% step cannot be served "
        f"within {TOLERANCE} points: with {split.stable} stable pod(s) the closest is "
        f"{split.share}% ({split.canary} canary pod(s)); a canary's share of traffic is its "
        "share of serving pods, and it gets at most as many pods as the stable Deployment may "
        f"have ({miss.most})"
    )
    fewest = _fewest_stable_for(miss.percent)
    if split.share > miss.percent and fewest is not None and fewest > split.stable:
        return f"{head}; a {miss.percent}% step needs spec.{field} of at least {fewest}"
    if split.share < miss.percent:
        return f"{head}; use steps of at most {50 + TOLERANCE}% before the last (100)"
    return f"{head}; choose a step closer to one of the shares these pod counts give"


# --- the same rule in CEL, for the CRD --------------------------------------------------------


def _servable_cel(p: str, s: str, most: str) -> str:
    """CEL: some canary count c in 1..most serves step p beside s (> 0) stable pods, i.e.
    |100c/(c+s) - p| <= T, in exact integer arithmetic:

      100c >= (p-T)(c+s)  <=>  c >= (p-T)s/(100+T-p): the least such c is
                               L = max(1, ceil((p-T)s/(100+T-p)));  L <= most  <=>
                               (p-T)s <= most(100+T-p)  (also when p <= T, where L is 1);
      100c <= (p+T)(c+s)  <=>  c(100-T-p) <= (p+T)s: true for p >= 100-T, else L must pass.
    """
    t = TOLERANCE
    least = f"({p} <= {t} ? 1 : (({p} - {t}) * {s} + {99 + t} - {p}) / ({100 + t} - {p}))"
    return (
        f"(({p} - {t}) * {s} <= {most} * ({100 + t} - {p}) && "
        f"({p} >= {100 - t} || {least} * ({100 - t} - {p}) <= ({p} + {t}) * {s}))"
    )


def _step_servable_cel(p: str) -> str:
    """CEL on the spec: step p (< 100) is servable at every stable count the bounds allow.

    With an HPA that is every count in minReplicas..maxReplicas, and CEL has no ranges; the two
    ends decide it. From 4 stable pods on, the canary counts a step accepts span more than one
    pod, so only the ends of that window can fail, and each moves one way with the stable
    count: the fewest stable pods are the worst case for a small step, the most for a large
    one. Below 4 pods tests/api checks every case. `replicas: 0` has nothing to split.
    """
    low, high = "self.autoscaling.minReplicas", "self.autoscaling.maxReplicas"
    # min > max has a rule of its own; here, as in stable_counts, there is no count to check.
    hpa = f"({low} > {high} || [{low}, {high}].all(s, {_servable_cel(p, 's', high)}))"
    fixed = f"self.replicas == 0 || {_servable_cel(p, 'self.replicas', 'self.replicas')}"
    return f"(has(self.autoscaling) ? {hpa} : {fixed})"


_STEPS = "self.rollout.canary.steps"


def servable_steps_cel() -> str:
    """The CRD rule on the spec: every canary step before 100 is servable (see module doc)."""
    return (
        f"self.rollout.strategy != 'Canary' || !has(self.rollout.canary) || "
        f"{_STEPS}.all(p, p >= 100 || {_step_servable_cel('p')})"
    )


def unservable_step_message_cel(max_steps: int) -> str:
    """The CRD rule's messageExpression: it names the first unservable step by its index."""
    indexes = ", ".join(str(i) for i in range(max_steps))
    # `[x].exists(p, ...)` names the step p, as `all` does in the rule.
    index = (
        f"[{indexes}].filter(i, i < size({_STEPS}) && "
        f"[{_STEPS}[i]].exists(p, p < 100 && !{_step_servable_cel('p')}))[0]"
    )
    return (
        f"'spec.rollout.canary.steps[' + string({index}) + ']: this step cannot be served "
        f"within {TOLERANCE} points by the replica bounds: a canary gets the share of traffic "
        "that its pods are of all serving pods, beside every stable pod and with at most as "
        "many pods as the stable Deployment may have; use more replicas (minReplicas with "
        f"autoscaling) for a small step, at most {50 + TOLERANCE}% before the last step'"
    )
