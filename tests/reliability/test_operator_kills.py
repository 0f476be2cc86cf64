"""Operator kills: the real operator (`kubeloop operator`, a subprocess) is SIGKILLed at seeded
random moments while a TrainingPipeline goes through many runs, and restarted. Afterwards we
count what an operator must never do: duplicate Jobs, lost runs, double-counted runs, a stuck
status.

Faked: the API server (the emulator, in this process) and the Job controller (the test plays
it, as tests/integration does). `KUBELOOP_SOAK=1` (make reliability) runs 50 runs instead of 6.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from tests.integration.harness import Cluster
from tests.reliability import runs
from tests.reliability.operator_process import OperatorProcess, killable_operator

pytestmark = pytest.mark.slow  # minutes: `make test` starts it first

RUNS = 50 if os.environ.get("KUBELOOP_SOAK") == "1" else 6
SEED = int(os.environ.get("KUBELOOP_SEED", "20261123"))
NAME = "killed"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, OperatorProcess]]:
    with killable_operator(tmp_path_factory.mktemp("operator") / "operator.log") as running:
        yield running


def _maybe_kill_later(rng: random.Random, operator: OperatorProcess) -> threading.Thread | None:
    """With probability 1/2, SIGKILL the operator 0-1.5 s from now (while it works)."""
    if rng.random() < 0.5:
        return None
    delay = rng.uniform(0.0, 1.5)
    timer = threading.Timer(delay, operator.kill_and_restart)
    timer.start()
    return timer


def test_sigkill_at_random_points_loses_and_duplicates_nothing(
    setup: tuple[Cluster, OperatorProcess],
) -> None:
    cluster, operator = setup
    rng = random.Random(SEED)
    doc = runs.pipeline(NAME)
    doc["spec"].pop("storageSecretRef")
    started = time.monotonic()
    cluster.create(doc)
    for run in range(1, RUNS + 1):
        timer = _maybe_kill_later(rng, operator)
        runs.start_run(cluster, NAME, run, timeout=90)
        if timer:
            timer.join()
        timer = _maybe_kill_later(rng, operator)
        runs.finish_run(cluster, NAME, run, round(0.76 + rng.random() * 0.2, 4), timeout=90)
        if timer:
            timer.join()
    # Let the operator settle (a last restart may still be reconciling), then count.
    runs.quiet(cluster, "trainingpipelines", NAME)
    jobs = runs.jobs_of(cluster, NAME)
    names = Counter(j["metadata"]["name"] for j in jobs)
    status = runs.status(cluster, NAME)
    ids = Counter(r["id"] for r in status.get("runs") or [])
    expected = {str(i) for i in range(1, RUNS + 1)}
    duplicates = len(jobs) - RUNS
    lost = len(expected - set(ids))
    double_counted = sum(n - 1 for n in ids.values() if n > 1)
    stuck = int(bool(status.get("currentRun")) or status.get("phase") not in ("Succeeded",))
    elapsed = time.monotonic() - started
    print(
        f"\nRELIABILITY operator-kills: runs={RUNS}, kills={operator.kills}, seed={SEED}, "
        f"duplicate_jobs={duplicates}, lost_runs={lost}, double_counted={double_counted}, "
        f"stuck={stuck}, seconds={elapsed:.0f}"
    )
    assert operator.kills > 0, "no kill happened: the experiment proved nothing"
    assert operator.exits == 0, "the operator exited on its own (see its log)"
    assert max(names.values()) == 1 and duplicates == 0, f"duplicate Jobs: {names}"
    assert lost == 0 and double_counted == 0, f"runs in status: {sorted(ids.items())}"
    assert not stuck, status
    best = max(float(r["metrics"]["roc_auc"]) for r in status["runs"])
    assert status["champion"]["score"] == best  # the gate applied once per run, in order
