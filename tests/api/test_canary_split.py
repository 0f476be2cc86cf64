"""The canary split: pod counts per step, the share they serve, and which steps are servable."""

from __future__ import annotations

import pytest

from kubeloop.api.canary_split import (
    CanarySplit,
    StepMiss,
    first_unservable_step,
    split_step,
    stable_counts,
    unservable_step_message,
)


@pytest.mark.parametrize(
    ("stable", "percent", "most", "canary", "share"),
    [
        # The case: 2 replicas, a 10% step. One canary pod beside both stable pods is
        # the closest (33%); before, the stable side lost a pod and the canary served 50%.
        (2, 10, 2, 1, 33),
        (4, 10, 4, 1, 20),
        (9, 10, 9, 1, 10),
        (20, 1, 20, 1, 5),  # at least one pod
        # Scale the canary up rather than take pods from the stable side.
        (2, 50, 2, 2, 50),
        (10, 50, 10, 10, 50),
        (2, 55, 2, 2, 50),  # 50% and 60% are as far: fewer pods
        # With an HPA the canary may grow to maxReplicas beside the stable count.
        (2, 75, 10, 6, 75),
        (10, 75, 10, 10, 50),  # capped: never more pods than the stable side may have
        (5, 25, 10, 2, 29),  # 2 pods (28.6%) beat 1 (16.7%)
        (4, 25, 10, 1, 20),  # 1 pod (20%) beats 2 (33.3%)
        (7, 12, 7, 1, 13),  # 12.5% rounds half up
        (0, 50, 0, 0, 0),  # scaled to zero: no traffic to split
    ],
)
def test_split_keeps_the_stable_pods_and_comes_closest_to_the_step(
    stable: int, percent: int, most: int, canary: int, share: int
) -> None:
    split = split_step(stable, percent, most)
    assert split == CanarySplit(canary=canary, stable=stable if stable else 0)
    assert split.share == share


@pytest.mark.parametrize("percent", [0, 100, 101])
def test_split_is_for_steps_before_the_last(percent: int) -> None:
    with pytest.raises(ValueError, match=r"1\.\.99"):
        split_step(2, percent, 2)


@pytest.mark.parametrize(
    ("replicas", "autoscaling", "steps", "miss"),
    [
        (2, None, [10, 50, 100], StepMiss(0, 10, CanarySplit(1, 2), most=2)),
        (3, None, [10, 50, 100], StepMiss(0, 10, CanarySplit(1, 3), most=3)),
        (4, None, [10, 50, 100], None),  # 20% is 10 points from 10%: servable
        (4, None, [10, 60, 100], None),  # 50% for 60%
        (4, None, [10, 61, 100], StepMiss(1, 61, CanarySplit(4, 4), most=4)),
        (1, None, [50, 100], None),
        (0, None, [10, 50, 100], None),  # scaled to zero: nothing to split
        (2, (2, 10), [10, 50, 100], StepMiss(0, 10, CanarySplit(1, 2), most=10)),  # the example's
        (2, (4, 10), [10, 50, 100], None),  # spec.replicas is the HPA's to ignore
        (2, (2, 10), [25, 50, 100], None),  # the example now
        (2, (2, 10), [60, 100], None),
        (2, (2, 10), [70, 100], StepMiss(0, 70, CanarySplit(10, 7), most=10)),  # 59% from 7 on
        (2, (1, 1), [39, 100], StepMiss(0, 39, CanarySplit(1, 1), most=1)),  # 50% is 11 off
        (2, None, [100], None),
    ],
)
def test_first_unservable_step(
    replicas: int,
    autoscaling: tuple[int, int] | None,
    steps: list[int],
    miss: StepMiss | None,
) -> None:
    assert first_unservable_step(steps, stable_counts(replicas, autoscaling)) == miss


def _servable(percent: int, stable: int, most: int) -> bool:
    return not split_step(stable, percent, most).misses(percent)


def test_with_an_hpa_the_fewest_and_most_stable_pods_decide() -> None:
    """What the CRD's CEL rule relies on: if a step is servable beside minReplicas and beside
    maxReplicas stable pods, it is servable beside every count between (proved in the module
    from 4 pods on; every case with fewer is checked here)."""
    for percent in range(1, 100):
        for low in range(1, 4):
            for high in range(low, 14):
                ends = _servable(percent, low, high) and _servable(percent, high, high)
                every = all(_servable(percent, s, high) for s in range(low, high + 1))
                assert ends == every, (percent, low, high)


@pytest.mark.parametrize(
    ("miss", "autoscaling", "says"),
    [
        (
            StepMiss(0, 10, CanarySplit(1, 2), most=2),
            False,
            ["closest is 33% (1 canary pod(s))", "a 10% step needs spec.replicas of at least 4"],
        ),
        (
            StepMiss(0, 10, CanarySplit(1, 2), most=10),
            True,
            ["a 10% step needs spec.autoscaling.minReplicas of at least 4"],
        ),
        (StepMiss(1, 75, CanarySplit(4, 4), most=4), False, ["at most 60% before the last"]),
    ],
)
def test_message_names_the_step_what_it_gets_and_the_fix(
    miss: StepMiss, autoscaling: bool, says: list[str]
) -> None:
    message = unservable_step_message(miss, autoscaling)
    assert message.startswith(f"spec.rollout.canary.steps[{miss.index}]: ")
    assert all(part in message for part in says), message
