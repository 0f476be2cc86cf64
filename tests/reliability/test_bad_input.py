"""Bad and hostile input: every invalid custom resource is refused where a user sees it, with
a message that names the field; what passes admission but cannot run is reported in a
condition; the operator neither crashes nor retries forever.

Three layers are exercised: the API request path (a POST over HTTP to the emulated API, which
admits kubeloop kinds with the CRD's schema and CEL rules and checks metadata as the API server
does), the operator (a real `kubeloop operator` process), and the pure builders under random
specs (hypothesis).
"""

from __future__ import annotations

import copy
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.integration.harness import DM, MD, TP, Cluster, example, wait_for
from tests.reliability.operator_process import OperatorProcess

from kubeloop.api.parse import SpecError, parse_resource
from kubeloop.api.training import TrainingPipeline
from kubeloop.local.cluster.emulator import EmulatorThread
from kubeloop.resources.common import Owner, WorkloadDefaults
from kubeloop.resources.training import build_training_job

ROOT = Path(__file__).resolve().parents[2]
INVALID = sorted((ROOT / "tests" / "data" / "invalid").glob("*.yaml"))
PLURALS = {"TrainingPipeline": TP, "ModelDeployment": MD, "DriftMonitor": DM}


def _expected_field(path: Path) -> str:
    for line in path.read_text().splitlines():
        if line.startswith("# expect-field:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"{path.name} has no '# expect-field:' line")


def _pipeline(name: str = "churn", **meta: Any) -> dict[str, Any]:
    doc = example("churn-pipeline.yaml")
    doc["metadata"] = {"name": name, "namespace": "ml", **meta}
    return doc


def _hostile() -> list[tuple[str, dict[str, Any], str]]:
    """(id, object, field the refusal must name): hostile or odd input beyond tests/data."""
    cases: list[tuple[str, dict[str, Any], str]] = [
        (
            "annotation-300KB",
            _pipeline(annotations={"note": "x" * 300_000}),
            "metadata.annotations",
        ),
        ("unicode-name", _pipeline("modèle-churn"), "metadata.name"),
        ("emoji-name", _pipeline("churn-🚀"), "metadata.name"),
        ("name-300-chars", _pipeline("a" * 300), "metadata.name"),
        ("label-with-spaces", _pipeline(labels={"team": "data science"}), "metadata.labels"),
    ]
    spec_null = _pipeline()
    spec_null["spec"] = None
    cases.append(("spec-null", spec_null, "spec"))
    spec_list = _pipeline()
    spec_list["spec"] = ["data", "model"]
    cases.append(("spec-is-a-list", spec_list, "spec"))
    gpus_text = _pipeline()
    gpus_text["spec"]["resources"]["gpus"] = "all of them"
    cases.append(("gpus-text", gpus_text, "spec.resources.gpus"))
    six_fields = _pipeline()
    six_fields["spec"]["schedule"] = "0 0 3 * * 0"
    cases.append(("cron-six-fields", six_fields, "spec.schedule"))
    shell = _pipeline()
    shell["spec"]["model"]["estimator"] = "LogisticRegression; rm -rf /"
    cases.append(("estimator-shell", shell, "spec.model.estimator"))
    traversal = _pipeline()
    traversal["spec"]["artifacts"] = "http://169.254.169.254/latest/meta-data/"
    cases.append(("artifacts-metadata-endpoint", traversal, "spec.artifacts"))
    md = example("churn-deployment.yaml")
    md["spec"]["replicas"] = 10**12
    cases.append(("replicas-huge", md, "spec.replicas"))
    return cases


HOSTILE = _hostile()


@pytest.fixture(scope="module")
def api() -> Iterator[EmulatorThread]:
    with EmulatorThread() as thread:
        yield thread


def _post(url: str, obj: dict[str, Any]) -> tuple[int, str]:
    plural = PLURALS.get(str(obj.get("kind")), TP)
    group, version, resource = plural.split("/")
    # As kubectl sends it: unknown fields are refused (the server's default, Warn, drops them).
    path = f"{url}/apis/{group}/{version}/namespaces/ml/{resource}?fieldValidation=Strict"
    body = json.dumps(obj).encode()
    request = urllib.request.Request(
        path, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.mark.parametrize(
    ("obj", "field"),
    [(yaml.safe_load(p.read_text()), _expected_field(p)) for p in INVALID]
    + [(obj, field) for _, obj, field in HOSTILE],
    ids=[p.stem for p in INVALID] + [case_id for case_id, _, _ in HOSTILE],
)
def test_refused_over_the_api_naming_the_field(
    api: EmulatorThread, obj: dict[str, Any], field: str
) -> None:
    status, text = _post(api.url, copy.deepcopy(obj))
    message = json.loads(text).get("message", "")
    # 422 for what the schema refuses; 400 "strict decoding error" for an unknown field.
    assert status == 422 or (status == 400 and "strict decoding error" in message), (
        status,
        text[:300],
    )
    assert field in message, message[:500]


def test_a_10mb_object_is_refused_before_it_is_parsed(api: EmulatorThread) -> None:
    # kube-apiserver answers 413 to bodies over 3 MiB; the emulator's limit is 1 MiB.
    status, text = _post(api.url, _pipeline(annotations={"note": "x" * 10_000_000}))
    assert status == 413, text[:200]


def test_at_least_thirty_distinct_bad_inputs() -> None:
    assert len(INVALID) + len(HOSTILE) >= 30


# --- what passes admission but cannot run: the operator reports it and stays calm ------------


@pytest.fixture(scope="module")
def operated(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Cluster, OperatorProcess, Path]]:
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    with EmulatorThread() as thread:
        operator = OperatorProcess(thread.url, log)
        operator.start()
        try:
            yield Cluster(thread), operator, log
        finally:
            operator.stop()


def _condition(cluster: Cluster, plural: str, name: str, reason: str) -> dict[str, Any] | None:
    status = (cluster.get(plural, "ml", name) or {}).get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("reason") == reason:
            return dict(cond)
    return None


def test_unrunnable_specs_are_reported_and_the_operator_stays_up(
    operated: tuple[Cluster, OperatorProcess, Path],
) -> None:
    cluster, operator, _log = operated
    # 1. A cron the CRD admits but a CronJob would not (a range that runs backwards; no regular
    # expression can compare its ends): the operator refuses it.
    tp = _pipeline("bad-cron")
    tp["spec"]["schedule"] = "50-10 * * * *"
    cluster.create(tp)
    # 2. A deployment of a pipeline that does not exist.
    md = example("churn-deployment.yaml", name="orphan")
    md["spec"]["model"]["pipelineRef"]["name"] = "ghost"
    cluster.create(md)
    # 3. A monitor of a deployment that does not exist (its deploymentRef names "churn").
    cluster.create(example("churn-monitor.yaml", name="nobody"))

    def reported(plural: str, name: str, field: str) -> dict[str, Any] | None:
        status = (cluster.get(plural, "ml", name) or {}).get("status") or {}
        for cond in status.get("conditions") or []:
            if cond.get("status") in ("True", "False") and field in (cond.get("message") or ""):
                return dict(cond)
        return None

    bad_cron = wait_for(lambda: reported(TP, "bad-cron", "spec.schedule"), what="cron reported")
    orphan = wait_for(
        lambda: reported(MD, "orphan", "spec.model.pipelineRef"), what="pipelineRef reported"
    )
    nobody = wait_for(
        lambda: reported(DM, "nobody", "spec.deploymentRef"), what="deploymentRef reported"
    )
    assert cluster.get("batch/v1/jobs", "ml", "bad-cron-run-1") is None
    assert cluster.get("apps/v1/deployments", "ml", "orphan") is None
    # Calm afterwards: no retry storm, no crash.
    before = cluster.em.requests_served
    time.sleep(5)  # real time on purpose: the request rate over 5 idle seconds
    rate = (cluster.em.requests_served - before) / 5
    print(
        f"\nRELIABILITY bad-input-operator: reported=3/3, idle_rps={rate:.1f} "
        f"(resync 0.5 s, 3 objects), "
        f"operator_exits={operator.exits}; messages: {bad_cron['message']!r}, "
        f"{orphan['message']!r}, {nobody['message']!r}"
    )
    assert operator.exits == 0
    # The operator re-reads each object once per resync (0.5 s here, 30 s by default); a few
    # requests per object per resync is the level-triggered safety net, more is a retry storm.
    per_resync = rate * 0.5 / 3
    assert per_resync <= 5, f"{per_resync:.1f} requests per object per resync: retrying hot"


# --- random specs through the pure builders: a runnable Job or a field-naming SpecError -------

_TEXT = st.text(min_size=0, max_size=12)
_VALUE = st.one_of(st.integers(-5, 10**6), st.floats(allow_nan=True), _TEXT, st.none())


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.from_regex(r"[a-z][-a-z0-9]{0,60}", fullmatch=True),
    gpus=st.integers(-2, 16),
    workers=st.integers(-1, 80),
    framework=st.sampled_from(["sklearn", "torch", "xgboost", ""]),
    task=st.sampled_from(["classification", "regression", "ranking"]),
    estimator=st.one_of(st.none(), st.sampled_from(["LogisticRegression", "Ridge", "Evil"])),
    params=st.dictionaries(st.from_regex(r"[a-z_]{1,10}", fullmatch=True), _VALUE, max_size=4),
    schedule=st.one_of(st.none(), st.sampled_from(["0 3 * * 0", "61 * * * *", "@daily", "x"])),
    metric=st.sampled_from(["roc_auc", "rmse", "accuracy", "bogus"]),
)
def test_random_specs_become_a_job_or_a_field_error(
    *,
    name: str,
    gpus: int,
    workers: int,
    framework: str,
    task: str,
    estimator: str | None,
    params: dict[str, Any],
    schedule: str | None,
    metric: str,
) -> None:
    model: dict[str, Any] = {"framework": framework, "task": task, "params": params}
    if estimator:
        model["estimator"] = estimator
    spec: dict[str, Any] = {
        "data": {"train": "s3://bucket/train/", "target": "y"},
        "model": model,
        "artifacts": "s3://bucket/models/",
        "resources": {"gpus": gpus},
        "distributed": {"workers": workers},
        "promotion": {"metric": metric},
    }
    if schedule:
        spec["schedule"] = schedule
    doc = {
        "apiVersion": "kubeloop.io/v1alpha1",
        "kind": "TrainingPipeline",
        "metadata": {"name": name, "namespace": "ml", "uid": "u-1"},
        "spec": spec,
    }
    try:
        parsed = parse_resource(doc)
    except SpecError as exc:
        assert exc.messages
        for message in exc.messages:
            assert message.startswith(("spec", "metadata.name")), message
        return
    assert isinstance(parsed, TrainingPipeline)
    job = build_training_job(
        Owner.of(doc),
        parsed.spec,
        run_id=99999,
        trigger="Create",
        generation=1,
        defaults=WorkloadDefaults(),
    )
    assert len(job["metadata"]["name"]) <= 63, job["metadata"]["name"]
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert json.loads(env["KUBELOOP_SPEC"])["model"]["framework"] == framework
