"""The protobuf bodies real kubectl sends (tests/data/kubectl/*.pb), read as the emulator
reads them: the envelope, ObjectMeta, a SelfSubjectAccessReview's spec, and the Job of
`kubectl create job --from=cronjob/...` rebuilt from its CronJob."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kubeloop.local.cluster.builtins import (
    UnreadableBodyError,
    access_review,
    default_job,
    json_from_protobuf,
)
from kubeloop.local.cluster.protobuf import MAGIC, ProtobufError, decode_envelope, object_meta

DATA = Path(__file__).resolve().parents[1] / "data/kubectl"
JOB = (DATA / "job-from-cronjob.pb").read_bytes()
REVIEW = (DATA / "selfsubjectaccessreview.pb").read_bytes()
CRONJOB_UID = "71a0f9fe-4c86-4be0-b9d8-f2b2124a61e0"
TEMPLATE = {"spec": {"restartPolicy": "Never", "containers": [{"name": "m", "image": "i"}]}}


def _cronjob(uid: str = CRONJOB_UID) -> dict[str, Any]:
    return {
        "metadata": {"name": "nightly", "namespace": "ml", "uid": uid},
        "spec": {"jobTemplate": {"spec": {"backoffLimit": 1, "template": TEMPLATE}}},
    }


def test_the_envelope_and_metadata_of_kubectls_job() -> None:
    api_version, kind, raw = decode_envelope(JOB)
    assert (api_version, kind) == ("batch/v1", "Job")
    assert object_meta(raw) == {
        "name": "drift-now",
        "namespace": "ml",
        "labels": {"app": "drift"},
        "annotations": {"cronjob.kubernetes.io/instantiate": "manual", "team": "ml"},
        "ownerReferences": [
            {
                "apiVersion": "batch/v1",
                "kind": "CronJob",
                "name": "nightly",
                "uid": CRONJOB_UID,
                "controller": True,
            }
        ],
    }


def test_the_job_spec_is_the_cronjobs_job_template() -> None:
    found: list[tuple[str, str]] = []

    def find(namespace: str, name: str) -> dict[str, Any]:
        found.append((namespace, name))
        return _cronjob()

    job = json_from_protobuf(JOB, find)
    assert found == [("ml", "nightly")]
    assert job["apiVersion"] == "batch/v1" and job["kind"] == "Job"
    assert job["metadata"]["name"] == "drift-now"
    assert job["spec"] == {"backoffLimit": 1, "template": TEMPLATE}


@pytest.mark.parametrize(
    "cronjob", [None, _cronjob(uid="another")], ids=["no-cronjob", "recreated-cronjob"]
)
def test_a_job_whose_cronjob_is_not_stored_is_refused(cronjob: dict[str, Any] | None) -> None:
    with pytest.raises(UnreadableBodyError, match="CronJob nightly"):
        json_from_protobuf(JOB, lambda namespace, name: cronjob)


def test_the_access_review_is_read_and_allowed() -> None:
    review = json_from_protobuf(REVIEW, lambda namespace, name: None)
    attributes = {
        "namespace": "ml",
        "verb": "create",
        "group": "kubeloop.io",
        "resource": "trainingpipelines",
    }
    assert review["spec"] == {"resourceAttributes": attributes}
    answer = access_review(review)
    assert answer["kind"] == "SelfSubjectAccessReview" and answer["status"]["allowed"] is True
    assert answer["spec"] == review["spec"]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b'{"kind": "Job"}', ProtobufError),  # JSON: no magic prefix
        (JOB[:60], ProtobufError),  # truncated
        (MAGIC + b"\x0a\x0f\x0a\x02v1\x12\x09Namespace", UnreadableBodyError),  # other kinds
    ],
)
def test_other_bodies_are_refused(body: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        json_from_protobuf(body, lambda namespace, name: _cronjob())


def test_a_job_gets_the_selector_the_api_server_defaults() -> None:
    job = default_job(
        {"metadata": {"name": "j", "uid": "u"}, "spec": {"template": {"metadata": {}}}}
    )
    assert job["spec"]["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": "u"}}
    assert job["spec"]["template"]["metadata"]["labels"] == {
        "batch.kubernetes.io/controller-uid": "u",
        "batch.kubernetes.io/job-name": "j",
        "controller-uid": "u",
        "job-name": "j",
    }
    manual = {"metadata": {"name": "j", "uid": "u"}, "spec": {"manualSelector": True}}
    assert default_job(manual) == manual
