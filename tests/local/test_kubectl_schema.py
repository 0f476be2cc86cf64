"""Real kubectl against the emulated API, the parts that need the server's schema knowledge
(issue 15): server-side printing (Tables with the CRDs' printer columns, in lists and watches),
the OpenAPI v3 documents (`explain`, server-side field validation in `apply`), server-side
apply with field managers, and pruning as a real API server does."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kmock
import pytest
import yaml
from tests.local.kubectl_helpers import KUBECTL, ROOT, env, kubectl, running_cluster, wait_for

from kubeloop.local.cluster.emulator import EmulatorThread

TP = "kubeloop.io/v1alpha1/trainingpipelines"

pytestmark = pytest.mark.skipif(
    not KUBECTL.exists(), reason=f"{KUBECTL} is missing: `make tools` installs kubectl"
)

BUILTINS: list[dict[str, Any]] = [
    {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "churn-train-1", "namespace": "ml"},
        "spec": {"containers": [{"name": "train", "image": "kubeloop"}]},
        "status": {
            "phase": "Running",
            "containerStatuses": [{"name": "train", "ready": True, "restartCount": 2}],
        },
    },
    {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "churn-train-1", "namespace": "ml"},
        "spec": {"completions": 1, "template": {}},
        "status": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]},
    },
    {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "churn-v1", "namespace": "ml"},
        "spec": {"replicas": 2},
        "status": {"readyReplicas": 1, "updatedReplicas": 2, "availableReplicas": 1},
    },
    {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "churn-drift", "namespace": "ml"},
        "spec": {"schedule": "*/5 * * * *"},
    },
    {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "churn.1", "namespace": "ml"},
        "type": "Normal",
        "reason": "Trained",
        "message": "run 1 trained",
        "involvedObject": {"kind": "TrainingPipeline", "name": "churn"},
    },
]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EmulatorThread, Path]]:
    home = tmp_path_factory.mktemp("kubectl-schema")
    with running_cluster(home) as c:
        for doc in BUILTINS:
            c.call(c.emulator.create_object(doc))
        yield c, home


def _lines(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines() if line.strip()]


def test_get_prints_the_crds_printer_columns(cluster: tuple[EmulatorThread, Path]) -> None:
    c, home = cluster
    c.call(
        c.emulator.patch_object(
            TP, "ml", "churn", {"status": {"phase": "Succeeded"}}, subresource="status"
        )
    )
    printed = kubectl(home, "get", "tp,md,dm", "-A").stdout
    blocks = [_lines(block) for block in printed.split("\n\n")]
    tp, md, dm = blocks
    assert tp[0] == [
        *("NAMESPACE", "NAME", "PHASE", "CHAMPION", "METRIC", "SCORE", "PROGRESS", "TRIALS"),
        "AGE",
    ]
    assert tp[1][:4] == ["ml", "trainingpipeline.kubeloop.io/churn", "Succeeded", "roc_auc"]
    assert md[0] == ["NAMESPACE", "NAME", "VERSION", "READY", "URL", "AGE"]  # priority 1: -o wide
    assert dm[0] == ["NAMESPACE", "NAME", "DRIFTED", "SHARE", "LAST", "RUN", "AGE"]
    wide = _lines(kubectl(home, "get", "md", "-n", "ml", "-o", "wide").stdout)
    assert wide[0] == ["NAME", "VERSION", "READY", "CANARY", "STEP", "URL", "AGE"]
    one = _lines(kubectl(home, "get", "tp", "churn", "-n", "ml").stdout)
    assert one[1][:3] == ["churn", "Succeeded", "roc_auc"]


def test_get_prints_columns_for_built_in_kinds(cluster: tuple[EmulatorThread, Path]) -> None:
    _, home = cluster
    printed = kubectl(home, "get", "pods,jobs,deployments,cronjobs,events", "-n", "ml").stdout
    pods, jobs, deployments, cronjobs, events = (_lines(b) for b in printed.split("\n\n"))
    assert pods == [
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        ["pod/churn-train-1", "1/1", "Running", "2", pods[1][-1]],
    ]
    assert jobs[0] == ["NAME", "STATUS", "COMPLETIONS", "AGE"]
    assert jobs[1][:3] == ["job.batch/churn-train-1", "Complete", "1/1"]
    assert deployments[0] == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert deployments[1][:4] == ["deployment.apps/churn-v1", "1/2", "2", "1"]
    assert cronjobs[0][:3] == ["NAME", "SCHEDULE", "SUSPEND"]
    assert events[0] == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert events[1][1:] == ["Normal", "Trained", "trainingpipeline/churn", "run", "1", "trained"]


def test_watch_prints_the_listed_rows_then_a_row_per_change(
    cluster: tuple[EmulatorThread, Path],
) -> None:
    c, home = cluster
    proc = subprocess.Popen(
        [str(KUBECTL), "get", "tp", "-n", "ml", "-w"],
        env=env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        lines.extend(proc.stdout)

    threading.Thread(target=read, daemon=True).start()
    try:
        assert wait_for(lambda: len(lines) >= 2), lines  # the header and the listed row
        c.call(
            c.emulator.patch_object(
                TP, "ml", "churn", {"status": {"phase": "Queued"}}, subresource="status"
            )
        )
        assert wait_for(lambda: any("Queued" in line for line in lines)), lines
        assert lines[0].split()[:3] == ["NAME", "PHASE", "CHAMPION"]
        assert [line.split()[0] for line in lines] == ["NAME", "churn", "churn"]  # listed once
    finally:
        proc.terminate()
        proc.wait(10)


def test_explain_prints_the_field_docs_from_the_crd(cluster: tuple[EmulatorThread, Path]) -> None:
    _, home = cluster
    explained = kubectl(home, "explain", "trainingpipeline.spec.model").stdout
    assert "KIND:       TrainingPipeline" in explained
    assert "What to train." in explained  # spec.model's description in the CRD
    assert "estimator\t<string>" in explained and "Estimator from the allow-list." in explained
    assert "task\t<string> -required-" in explained
    assert "Standard object's metadata" in kubectl(home, "explain", "tp.metadata").stdout
    assert "KIND:       Pod" in kubectl(home, "explain", "pods").stdout


def _manifest(tmp_path: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    doc = next(yaml.safe_load_all((ROOT / "examples/local/churn.yaml").read_text()))
    change(doc)
    path = tmp_path / f"{doc['metadata']['name']}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_apply_validates_fields_on_the_server(
    cluster: tuple[EmulatorThread, Path], tmp_path: Path
) -> None:
    c, home = cluster
    applied = kubectl(home, "apply", "-f", str(ROOT / "examples/local/churn.yaml"))
    assert "trainingpipeline.kubeloop.io/churn configured" in applied.stdout, applied.stderr
    before = c.emulator.get_object(TP, "ml", "churn")

    def typo(doc: dict[str, Any]) -> None:
        doc["spec"]["model"]["estimatr"] = "RandomForestClassifier"

    refused = kubectl(home, "apply", "-f", str(_manifest(tmp_path, typo)), ok=False)
    assert refused.returncode == 1
    assert 'strict decoding error: unknown field "spec.model.estimatr"' in refused.stderr
    assert c.emulator.get_object(TP, "ml", "churn") == before

    warned = kubectl(home, "apply", "--validate=warn", "-f", str(_manifest(tmp_path, typo)))
    assert 'Warning: unknown field "spec.model.estimatr"' in warned.stderr
    stored = c.emulator.get_object(TP, "ml", "churn")
    assert stored is not None and "estimatr" not in stored["spec"]["model"]  # pruned


def test_nulls_are_pruned_and_defaulted_as_a_real_server_does(
    cluster: tuple[EmulatorThread, Path], tmp_path: Path
) -> None:
    c, home = cluster

    def nulls(doc: dict[str, Any]) -> None:
        doc["metadata"]["name"] = "nulls"
        doc["spec"]["runPolicy"] = None
        doc["spec"]["promotion"]["minimum"] = None

    kubectl(home, "apply", "-f", str(_manifest(tmp_path, nulls)))
    stored = c.emulator.get_object(TP, "ml", "nulls")
    assert stored is not None
    assert stored["spec"]["runPolicy"]["historyLimit"] == 10  # defaulted as if absent
    assert "minimum" not in stored["spec"]["promotion"]


def _versions(c: EmulatorThread, name: str) -> int:
    return len(c.emulator.objects[kmock.resource(TP), "ml", name].history)


def test_server_side_apply_merges_records_managers_and_reports_conflicts(
    cluster: tuple[EmulatorThread, Path], tmp_path: Path
) -> None:
    c, home = cluster

    def rename(doc: dict[str, Any]) -> None:
        doc["metadata"]["name"] = "ssa"

    manifest = str(_manifest(tmp_path, rename))
    created = kubectl(home, "apply", "--server-side", "-f", manifest)
    assert "trainingpipeline.kubeloop.io/ssa serverside-applied" in created.stdout
    stored = c.emulator.get_object(TP, "ml", "ssa")
    assert stored is not None and stored["spec"]["runPolicy"]["historyLimit"] == 10  # admitted
    [entry] = stored["metadata"]["managedFields"]
    assert (entry["manager"], entry["operation"]) == ("kubectl", "Apply")
    assert "f:seed" in entry["fieldsV1"]["f:spec"]

    kubectl(home, "patch", "tp", "ssa", "-n", "ml", "--type", "merge", "-p", '{"spec":{"seed":7}}')
    refused = kubectl(home, "apply", "--server-side", "-f", manifest, ok=False)
    assert refused.returncode == 1
    assert 'conflict with "kubectl-patch" using kubeloop.io/v1alpha1: .spec.seed' in (
        refused.stderr
    )
    kept = c.emulator.get_object(TP, "ml", "ssa")
    assert kept is not None and kept["spec"]["seed"] == 7
    kubectl(home, "apply", "--server-side", "--force-conflicts", "-f", manifest)
    forced = c.emulator.get_object(TP, "ml", "ssa")
    assert forced is not None and forced["spec"]["seed"] == 42
    owners = {e["manager"]: e["fieldsV1"] for e in forced["metadata"]["managedFields"]}
    assert "f:seed" not in owners.get("kubectl-patch", {}).get("f:spec", {})

    # The existing objects (created without a manager) are applied to in place.
    applied = kubectl(home, "apply", "--server-side", "-f", str(ROOT / "examples/local/churn.yaml"))
    assert "modeldeployment.kubeloop.io/churn serverside-applied" in applied.stdout


def test_server_side_diff_changes_nothing(
    cluster: tuple[EmulatorThread, Path], tmp_path: Path
) -> None:
    c, home = cluster
    kubectl(
        home,
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        str(ROOT / "examples/local/churn.yaml"),
    )
    before, versions = c.emulator.get_object(TP, "ml", "churn"), _versions(c, "churn")
    same = kubectl(home, "diff", "--server-side", "-f", str(ROOT / "examples/local/churn.yaml"))
    assert same.stdout == ""  # exit 0: no differences

    def reseed(doc: dict[str, Any]) -> None:
        doc["spec"]["seed"] = 7

    changed = kubectl(
        home, "diff", "--server-side", "-f", str(_manifest(tmp_path, reseed)), ok=False
    )
    assert changed.returncode == 1, changed.stderr
    assert "-  seed: 42" in changed.stdout and "+  seed: 7" in changed.stdout
    assert c.emulator.get_object(TP, "ml", "churn") == before
    assert _versions(c, "churn") == versions  # nothing stored: no watch event, no run
