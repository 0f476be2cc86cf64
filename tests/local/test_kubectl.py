"""Real kubectl against `kubeloop local`'s emulated API (issue 15): short names and the
`kubeloop` category resolve, lists decode, core resources are found, server-side dry runs and
`kubectl diff` change nothing (no stored change, no watch event for the operator to act on), and
`kubectl scale` goes through the scale subresource."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kmock
import pytest
import yaml
from tests.local.kubectl_helpers import KUBECTL, ROOT, kubectl, running_cluster, wait_for
from tests.local.kubectl_helpers import env as _env

from kubeloop.local.cluster.emulator import EmulatorThread

TP = "kubeloop.io/v1alpha1/trainingpipelines"
MD = "kubeloop.io/v1alpha1/modeldeployments"

pytestmark = pytest.mark.skipif(
    not KUBECTL.exists(), reason=f"{KUBECTL} is missing: `make tools` installs kubectl"
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EmulatorThread, Path]]:
    home = tmp_path_factory.mktemp("kubectl")
    with running_cluster(home) as c:
        yield c, home


def _stored(cluster: EmulatorThread, resource: str, name: str) -> dict[str, Any]:
    found = cluster.emulator.get_object(resource, "ml", name)
    assert found is not None
    return found


def test_short_names_the_category_and_core_resources_resolve(
    cluster: tuple[EmulatorThread, Path],
) -> None:
    _, home = cluster
    listed = kubectl(home, "get", "tp,md,dm", "-A", "-o", "name").stdout.split()
    assert listed == [
        "trainingpipeline.kubeloop.io/churn",
        "modeldeployment.kubeloop.io/churn",
        "driftmonitor.kubeloop.io/churn",
    ]
    category = kubectl(home, "get", "kubeloop", "-n", "ml", "-o", "name").stdout.split()
    assert sorted(category) == sorted(listed)
    core = kubectl(home, "get", "pods,jobs,deployments,svc,ev,cj,hpa", "-n", "ml")
    assert "No resources found" in core.stderr
    assert kubectl(home, "get", "ns", "-o", "name").stdout.split() == ["namespace/ml"]
    resources = kubectl(home, "api-resources", "-o", "name").stdout.split()
    assert {"pods", "namespaces", "trainingpipelines.kubeloop.io", "jobs.batch"} <= set(resources)


def _watch_tp(home: Path) -> tuple[subprocess.Popen[str], list[str]]:
    """`kubectl get tp -w` in the background: the resourceVersion of every object it is sent."""
    proc = subprocess.Popen(
        [
            str(KUBECTL),
            "get",
            "tp",
            "-n",
            "ml",
            "-w",
            "-o",
            'jsonpath={.metadata.resourceVersion}{"\\n"}',
        ],
        env=_env(home),
        stdout=subprocess.PIPE,
        text=True,
    )
    versions: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        versions.extend(line.strip() for line in proc.stdout)

    threading.Thread(target=read, daemon=True).start()
    return proc, versions


def test_dry_run_and_diff_store_nothing_and_send_no_event(
    cluster: tuple[EmulatorThread, Path], tmp_path: Path
) -> None:
    c, home = cluster
    before = _stored(c, TP, "churn")
    proc, versions = _watch_tp(home)
    try:
        assert wait_for(lambda: bool(versions))  # listed: watching from here on
        patched = kubectl(
            home,
            "patch", "tp", "churn", "-n", "ml", "--dry-run=server", "--type", "merge",
            "-p", '{"spec": {"seed": 7}}', "-o", "jsonpath={.spec.seed}",
        )  # fmt: skip
        assert patched.stdout == "7"  # the answer is what would have been stored
        refused = kubectl(
            home,
            "patch", "tp", "churn", "-n", "ml", "--dry-run=server", "--type", "json",
            "-p", '[{"op": "replace", "path": "/spec/promotion/metric", "value": "nope"}]',
            ok=False,
        )  # fmt: skip
        assert refused.returncode == 1 and "metric" in refused.stderr  # admission still runs

        docs = list(yaml.safe_load_all((ROOT / "examples/local/churn.yaml").read_text()))
        docs[0]["spec"]["seed"] = 7
        manifest = tmp_path / "changed.yaml"
        manifest.write_text(yaml.safe_dump(docs[0]))
        diff = kubectl(home, "diff", "-f", str(manifest), ok=False)
        assert diff.returncode == 1, diff.stderr  # 1: there are differences
        assert "-  seed: 42" in diff.stdout and "+  seed: 7" in diff.stdout

        docs[0]["metadata"]["name"] = "other"
        manifest.write_text(yaml.safe_dump(docs[0]))
        created = kubectl(home, "create", "--dry-run=server", "-f", str(manifest))
        assert "created (server dry run)" in created.stdout
        assert c.emulator.get_object(TP, "ml", "other") is None
        assert (
            kubectl(home, "delete", "tp", "churn", "-n", "ml", "--dry-run=server").returncode == 0
        )

        after = _stored(c, TP, "churn")
        assert after == before  # spec, generation and resourceVersion unchanged
        assert c.emulator.list_objects("batch/v1/jobs", "ml") == []

        # A real change is seen by the same watch; the dry runs before it sent nothing.
        annotated = kubectl(
            home, "annotate", "tp", "churn", "-n", "ml", "seen=yes",
            "-o", "jsonpath={.metadata.resourceVersion}",
        ).stdout  # fmt: skip
        assert wait_for(lambda: annotated in versions), versions
        assert set(versions) == {before["metadata"]["resourceVersion"], annotated}
    finally:
        proc.terminate()
        proc.wait(10)


def test_scale_goes_through_the_scale_subresource(cluster: tuple[EmulatorThread, Path]) -> None:
    c, home = cluster
    scaled = kubectl(home, "scale", "md/churn", "-n", "ml", "--replicas=3")
    assert "scaled" in scaled.stdout
    stored = _stored(c, MD, "churn")
    assert stored["spec"]["replicas"] == 3 and stored["metadata"]["generation"] == 2
    assert (
        kubectl(home, "get", "md/churn", "-n", "ml", "-o", "jsonpath={.spec.replicas}").stdout
        == "3"
    )
    key = (kmock.resource(MD), "ml", "churn")
    versions = len(c.emulator.objects[key].history)
    kubectl(home, "scale", "md/churn", "-n", "ml", "--replicas=5", "--dry-run=server")
    assert _stored(c, MD, "churn")["spec"]["replicas"] == 3
    assert len(c.emulator.objects[key].history) == versions
