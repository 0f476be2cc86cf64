"""Real kubectl against a running `kubeloop local up -f examples/local/` (issue 15): the everyday
verbs work on the whole loop as on a cluster: get by category and `get tp,md,dm -A` with the
CRDs' printer columns, explain, apply with validation on and --server-side, diff and a server
dry-run (nothing stored, no run started, no event with the change on `get -w`), describe with
the object's own Events, logs of a training and a serving pod (and of `job/`, `deployment/`),
wait, rollout status, scale, create job --from=cronjob (run to completion by the pod runner),
auth can-i, and delete with kubectl's default wait, the children garbage-collected.

One `kubeloop local up` per module (it trains a model and starts servers); the tests run in
file order and the last ones delete what the first ones read.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml

from kubeloop.local.demo.datagen import FEATURES, churn_table, write_demo_data

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
        # The state file is written when the cluster is up, before `up` applies the files: wait
        # for the example's objects (a test that read first saw two of the three).
        wait_for(
            lambda: (
                len(c.kubectl("get", "tp,md,dm", "-n", "ml", "-o", "name").split()) == 3
                or process.poll() is not None
            ),
            "kubeloop local up to apply examples/local",
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


def _run_jobs(c: Cluster) -> list[str]:
    """The pipeline's training runs' Jobs (a registry Job the gate's promotion queued may come
    at any time: it is no run)."""
    selector = "kubeloop.io/trainingpipeline=churn"
    items = c.json("jobs", "-n", "ml", "-l", selector)["items"]
    return sorted(j["metadata"]["name"] for j in items)


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


def _rows(text: str) -> list[list[str]]:
    return [line.split() for line in text.strip().splitlines()]


def test_get_all_three_kinds_prints_the_printer_columns(cluster: Cluster) -> None:
    blocks = cluster.kubectl("get", "tp,md,dm", "-A").split("\n\n")
    tp, md, dm = (_rows(block) for block in blocks)
    assert tp[0] == [
        *("NAMESPACE", "NAME", "PHASE", "CHAMPION", "METRIC", "SCORE", "PROGRESS", "TRIALS"),
        "AGE",
    ]
    assert tp[1][:2] == ["ml", "trainingpipeline.kubeloop.io/churn"]
    assert md[0] == ["NAMESPACE", "NAME", "VERSION", "READY", "URL", "AGE"]
    assert dm[0] == ["NAMESPACE", "NAME", "DRIFTED", "SHARE", "LAST", "RUN", "AGE"]


def test_explain_and_apply_validate_against_the_crds(cluster: Cluster, tmp_path: Path) -> None:
    explained = cluster.kubectl("explain", "trainingpipeline.spec.model")
    assert "KIND:       TrainingPipeline" in explained and "task\t<string> -required-" in explained

    manifest = ROOT / "examples/local/churn.yaml"
    applied = cluster.kubectl("apply", "-f", str(manifest))  # validation on: kubectl's default
    assert "trainingpipeline.kubeloop.io/churn " in applied
    doc = next(yaml.safe_load_all(manifest.read_text()))
    doc["spec"]["model"]["estimatr"] = "RandomForestClassifier"
    typo = tmp_path / "typo.yaml"
    typo.write_text(yaml.safe_dump(doc))
    refused = cluster.kubectl("apply", "-f", str(typo), ok=False)
    assert 'strict decoding error: unknown field "spec.model.estimatr"' in refused

    applied = cluster.kubectl("apply", "--server-side", "-f", str(manifest))
    assert "trainingpipeline.kubeloop.io/churn serverside-applied" in applied
    stored = cluster.json("tp", "churn", "-n", "ml", "--show-managed-fields")
    assert "kubectl" in {m["manager"] for m in stored["metadata"]["managedFields"]}


def test_diff_and_server_dry_run_change_nothing_and_start_no_run(
    cluster: Cluster, tmp_path: Path
) -> None:
    """The watch (`get -w`) is sent no event for the dry runs, the stored object and the Jobs
    stay as they were; a real change afterwards is seen by the same watch."""
    before = cluster.json("tp", "churn", "-n", "ml")
    jobs = _run_jobs(cluster)
    assert "churn-run-1" in jobs
    watch = subprocess.Popen(
        [str(KUBECTL), "get", "tp", "churn", "-n", "ml", "-w", "--output-watch-events",
         "-o", "jsonpath={.type} {.object.metadata.generation} {.object.spec.seed} "
         '{.object.metadata.resourceVersion}{"\\n"}'],
        env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig)},
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    seen: list[str] = []
    threading.Thread(
        target=lambda: seen.extend(line.strip() for line in watch.stdout or ()), daemon=True
    ).start()
    try:
        wait_for(lambda: seen, "the watch to list the pipeline")
        patched = cluster.kubectl(
            "patch", "tp", "churn", "-n", "ml", "--dry-run=server", "--type", "merge",
            "-p", '{"spec": {"seed": 7}}', "-o", "jsonpath={.spec.seed}",
        )  # fmt: skip
        assert patched == "7"
        doc = next(yaml.safe_load_all((ROOT / "examples/local/churn.yaml").read_text()))
        doc["spec"]["seed"] = 7
        changed = tmp_path / "changed.yaml"
        changed.write_text(yaml.safe_dump(doc))
        diff = cluster.kubectl("diff", "-f", str(changed), ok=False)
        assert "-  seed: 42" in diff and "+  seed: 7" in diff

        after = cluster.json("tp", "churn", "-n", "ml")
        assert after["spec"] == before["spec"]
        assert after["metadata"]["generation"] == before["metadata"]["generation"]
        assert _run_jobs(cluster) == jobs
        version = cluster.kubectl(
            "annotate", "tp", "churn", "-n", "ml", "dry-runs=seen",
            "-o", "jsonpath={.metadata.resourceVersion}",
        )  # fmt: skip
        wait_for(lambda: any(line.endswith(version) for line in seen), "the annotation's event")
        # The operator's status writes come through the watch too; none carries the dry runs'
        # seed or a new generation.
        generation = before["metadata"]["generation"]
        assert all(line.split()[1:3] == [str(generation), "42"] for line in seen), seen
    finally:
        watch.terminate()
        watch.wait(10)


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


def _infer_body(rows: int) -> bytes:
    """A V2 request for `rows` churn customers, each feature a tensor of its own type."""
    table = churn_table(rows, seed=5).select(FEATURES)
    inputs = []
    for name in FEATURES:
        kind = table.schema.field(name).type
        if pa.types.is_floating(kind):
            datatype = "FP64"
        else:
            datatype = "INT64" if pa.types.is_integer(kind) else "BYTES"
        data = table.column(name).to_pylist()
        inputs.append({"name": name, "shape": [rows], "datatype": datatype, "data": data})
    return json.dumps({"inputs": inputs}).encode()


class Traffic(threading.Thread):
    """V2 requests to a served model, one after another, each answer kept (status, version)."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.body = url, _infer_body(5)
        self.answers: list[tuple[int, str]] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            request = urllib.request.Request(
                self.url, data=self.body, headers={"Content-Type": "application/json"}
            )
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    answer = json.loads(response.read())
                    self.answers.append((response.status, str(answer.get("model_version"))))
            except urllib.error.HTTPError as exc:
                self.answers.append((exc.code, exc.read().decode()[:300]))
            except OSError as exc:
                self.answers.append((0, str(exc)))
            self.done.wait(0.05)  # paces the client; not a wait for a state


def test_a_pipeline_deleted_and_applied_again_keeps_its_champion_and_serving_goes_on(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Issue 18: delete the TrainingPipeline and apply the same YAML again (what an Argo CD
    prune and re-sync do). The new object reads its champion and its run numbering back from
    the registry (run 1's Job reads it first, in its init container `registry`, and fails at
    once: run 1 is withdrawn), trains no run, and the ModelDeployment serves the same version
    throughout, every request answered."""
    # The replicas scaled up above serve first (a Service proxies ready pods only).
    cluster.kubectl(
        "rollout", "status", "deployment/churn", "-n", "ml", "--timeout=180s", timeout=190
    )
    before = cluster.json("tp", "churn", "-n", "ml")["status"]
    champion, last_run = before["champion"]["version"], int(before["lastRunId"])
    url = cluster.kubectl(
        "get", "svc", "churn", "-n", "ml",
        "-o", "jsonpath={.metadata.annotations.kubeloop\\.io/local-url}",
    )  # fmt: skip
    traffic = Traffic(f"{url.rstrip('/')}/v2/models/churn/infer")
    traffic.start()
    try:
        wait_for(lambda: len(traffic.answers) >= 5, "answers before the delete")
        docs = yaml.safe_load_all((ROOT / "examples/local/churn.yaml").read_text())
        pipeline = next(d for d in docs if d["kind"] == "TrainingPipeline")
        (tmp_path / "tp.yaml").write_text(yaml.safe_dump(pipeline))
        out = cluster.kubectl("delete", "tp", "churn", "-n", "ml", "--timeout=60s", timeout=70)
        assert "deleted" in out
        cluster.kubectl("apply", "-f", str(tmp_path / "tp.yaml"))

        def restored() -> dict[str, Any] | None:
            status: dict[str, Any] = cluster.json("tp", "churn", "-n", "ml").get("status") or {}
            ready = {c["type"]: c for c in status.get("conditions") or []}.get("Ready") or {}
            return status if ready.get("reason") == "ChampionRestored" else None

        after = wait_for(restored, "the champion read back from the registry", timeout=180)
        seen = len(traffic.answers)
        wait_for(lambda: len(traffic.answers) >= seen + 5, "answers after the re-apply")
    finally:
        traffic.done.set()
        traffic.join(timeout=60)
    assert after["champion"]["version"] == champion
    assert int(after["lastRunId"]) == last_run and after.get("currentRun") is None
    jobs = {j["metadata"]["name"] for j in cluster.json("jobs", "-n", "ml")["items"]}
    assert f"churn-run-{last_run + 1}" not in jobs
    failed = [a for a in traffic.answers if a[0] != 200]
    assert not failed, f"{len(failed)} of {len(traffic.answers)} failed: {failed[:3]}"
    assert {version for _, version in traffic.answers} == {champion}


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
