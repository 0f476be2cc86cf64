"""Real kubectl against a running `kubeloop local up -f examples/local/` (issue 15): the everyday
verbs work on the whole loop as on a cluster: get by category, describe with the object's own
Events, logs of a training and a serving pod (and of `job/`, `deployment/`), wait, rollout
status, scale, create job --from=cronjob (run to completion by the pod runner), auth can-i, and
delete with kubectl's default wait, the children garbage-collected.

One `kubeloop local up` per module (it trains a model and starts servers); the tests run in
file order and the last ones delete what the first ones read.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kubeloop.local.demo.datagen import write_demo_data

ROOT = Path(__file__).resolve().parents[2]
KUBECTL = ROOT / ".tools/bin/kubectl"

pytestmark = [
    pytest.mark.skipif(
        not KUBECTL.exists(), reason=f"{KUBECTL} is missing: `make tools` installs kubectl"
    ),
    pytest.mark.slow,  # minutes: `make test` starts it first
]


@dataclass
class Cluster:
    """The running `kubeloop local up` and where kubectl finds it."""

    home: Path
    kubeconfig: Path
    process: subprocess.Popen[bytes]

    def kubectl(self, *args: str, ok: bool = True, timeout: float = 90) -> str:
        """Run kubectl against the cluster; its stdout (asserts exit 0 unless `ok=False`)."""
        done = subprocess.run(
            [str(KUBECTL), *args],
            check=False,
            env={
                **os.environ,
                "KUBECONFIG": str(self.kubeconfig),
                "KUBECACHEDIR": str(self.home / "kubecache"),
            },
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if ok:
            assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
        return done.stdout if ok else done.stdout + done.stderr

    def json(self, *args: str) -> Any:
        """`kubectl get ... -o json`, decoded."""
        return json.loads(self.kubectl("get", *args, "-o", "json"))


def wait_for(check: Callable[[], Any], what: str, timeout: float = 120) -> Any:
    """Poll `check` until it returns something truthy (returned); fail naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    home = tmp_path_factory.mktemp("kubectl-cluster")
    write_demo_data(home / ".demo/data")  # examples/local reads file://.demo/data/ from the cwd
    state = home / "state"
    log = (home / "up.log").open("wb")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "operator")}
    process = subprocess.Popen(
        [sys.executable, "-m", "kubeloop.cli", "local", "--state-dir", str(state), "up",
         "-f", str(ROOT / "examples/local")],
        cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    c = Cluster(home, state / "kubeconfig", process)
    try:
        wait_for(
            lambda: (state / "local.json").exists() or process.poll() is not None,
            "kubeloop local up to start",
        )
        assert process.poll() is None, (home / "up.log").read_text()
        yield c
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def _pods(c: Cluster, component: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = c.json(
        "pods", "-n", "ml", "-l", f"app.kubernetes.io/component={component}"
    )["items"]
    return items


def test_get_by_category_and_core_kinds(cluster: Cluster) -> None:
    names = cluster.kubectl("get", "kubeloop", "-n", "ml", "-o", "name").split()
    assert sorted(names) == [
        "driftmonitor.kubeloop.io/churn",
        "modeldeployment.kubeloop.io/churn",
        "trainingpipeline.kubeloop.io/churn",
    ]
    wait_for(lambda: _pods(cluster, "training"), "the training pod")
    listed = cluster.kubectl("get", "pods,jobs,deployments,cronjobs,events", "-n", "ml")
    assert "pod/churn-run-1-" in listed and "job.batch/churn-run-1" in listed
    # Events print as the server's Table: LAST SEEN, TYPE, REASON, OBJECT, MESSAGE.
    assert "REASON" in listed and "trainingpipeline/churn" in listed


def test_wait_for_ready_and_rollout_status(cluster: Cluster) -> None:
    out = cluster.kubectl(
        "wait", "--for=condition=Ready", "md/churn", "-n", "ml", "--timeout=240s", timeout=250
    )
    assert "condition met" in out
    status = cluster.kubectl(
        "rollout", "status", "deployment/churn", "-n", "ml", "--timeout=120s", timeout=130
    )
    assert 'deployment "churn" successfully rolled out' in status


def test_describe_lists_only_the_objects_own_events(cluster: Cluster) -> None:
    described = cluster.kubectl("describe", "tp", "churn", "-n", "ml")
    events = described.split("\nEvents:", 1)[1]
    assert "RunStarted" in events and "Promoted" in events
    # The ModelDeployment's events share the name `churn` but not the kind/uid.
    assert "WaitingForModel" not in events and "PodsNotReady" not in events


def test_logs_of_training_and_serving_pods(cluster: Cluster) -> None:
    trainer = _pods(cluster, "training")[0]["metadata"]["name"]
    log = cluster.kubectl("logs", trainer, "-n", "ml")
    assert "kubeloop-result" in log and "TrainingResult" in log
    last = cluster.kubectl("logs", trainer, "-n", "ml", "--tail=1")
    assert last.count("\n") == 1 and "kubeloop-result" in last
    assert cluster.kubectl("logs", "job/churn-run-1", "-n", "ml", "--tail=1") == last

    server = _pods(cluster, "serving")[0]["metadata"]["name"]
    assert "kubeloop serve" in cluster.kubectl("logs", server, "-n", "ml")
    assert "kubeloop serve" in cluster.kubectl("logs", "deployment/churn", "-n", "ml")
    wrong = cluster.kubectl("logs", server, "-n", "ml", "-c", "nope", ok=False)
    assert "container nope is not valid" in wrong


def test_auth_can_i_answers_yes(cluster: Cluster) -> None:
    assert cluster.kubectl("auth", "can-i", "create", "trainingpipelines", "-n", "ml") == "yes\n"


def test_scale_is_reflected(cluster: Cluster) -> None:
    assert "scaled" in cluster.kubectl("scale", "md/churn", "--replicas=3", "-n", "ml")
    spec = cluster.kubectl("get", "md", "churn", "-n", "ml", "-o", "jsonpath={.spec.replicas}")
    assert spec == "3"


def test_create_job_from_cronjob_runs_to_completion(cluster: Cluster) -> None:
    wait_for(lambda: cluster.json("cronjobs", "-n", "ml")["items"], "the drift CronJob")
    cronjob = cluster.json("cronjob", "churn", "-n", "ml")
    out = cluster.kubectl("create", "job", "--from=cronjob/churn", "drift-now", "-n", "ml")
    assert "job.batch/drift-now created" in out
    job = cluster.json("job", "drift-now", "-n", "ml")
    assert job["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual"
    assert job["metadata"]["ownerReferences"][0]["uid"] == cronjob["metadata"]["uid"]
    assert job["spec"]["template"] == cronjob["spec"]["jobTemplate"]["spec"]["template"] | {
        "metadata": job["spec"]["template"]["metadata"]
    }
    done = cluster.kubectl(
        "wait", "--for=condition=Complete", "job/drift-now", "-n", "ml", "--timeout=120s",
        timeout=130,
    )  # fmt: skip
    assert "condition met" in done
    assert "DriftResult" in cluster.kubectl("logs", "job/drift-now", "-n", "ml")


def test_delete_waits_until_gone_and_children_are_collected(cluster: Cluster) -> None:
    started = time.monotonic()
    out = cluster.kubectl("delete", "md/churn", "-n", "ml", "--timeout=60s", timeout=70)
    assert "deleted" in out and time.monotonic() - started < 60
    assert cluster.kubectl("get", "md", "-n", "ml", "-o", "name") == ""
    wait_for(
        lambda: not cluster.json("deployments,services", "-n", "ml")["items"],
        "the Deployment and Service to be collected",
        timeout=30,
    )
