"""Container spec -> local process: env as the kubelet builds it, mounts, ports, indexes."""

from __future__ import annotations

import base64
import itertools
import sys
from pathlib import Path
from typing import Any

import pytest

from kubeloop.local.podspec import (
    EnvError,
    build_process,
    completion_indexes,
    cpu_threads,
    default_args,
    expand_vars,
    resolve_env,
)

POD = {
    "metadata": {
        "name": "churn-run-1-abcde",
        "namespace": "ml",
        "uid": "u-1",
        "labels": {"app": "x"},
        "annotations": {},
    },
    "spec": {"nodeName": "localhost"},
    "status": {"podIP": "127.0.0.1"},
}
SECRETS = {
    "s3": {"data": {"key": base64.b64encode(b"AKIA").decode()}, "stringData": {"plain": "p"}}
}


def test_env_resolves_secret_field_and_var_references_in_order() -> None:
    container = {
        "env": [
            {
                "name": "AWS_ACCESS_KEY_ID",
                "valueFrom": {"secretKeyRef": {"name": "s3", "key": "key"}},
            },
            {"name": "PLAIN", "valueFrom": {"secretKeyRef": {"name": "s3", "key": "plain"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "URL", "value": "s3://$(NS)/$(MISSING)/$$x"},
            {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
        ],
        "resources": {"limits": {"cpu": "2"}},
    }
    env = resolve_env(container, POD, SECRETS)
    assert env == {
        "AWS_ACCESS_KEY_ID": "AKIA",
        "PLAIN": "p",
        "NS": "ml",
        "APP": "x",
        "IP": "127.0.0.1",
        "URL": "s3://ml/$(MISSING)/$x",
        "CPU": "2",
    }


def test_missing_secret_is_a_config_error_unless_optional() -> None:
    ref = {"name": "nope", "key": "k"}
    with pytest.raises(EnvError, match="nope"):
        resolve_env({"env": [{"name": "A", "valueFrom": {"secretKeyRef": ref}}]}, POD, SECRETS)
    with pytest.raises(EnvError, match="no key 'k'"):
        resolve_env(
            {"env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "s3", "key": "k"}}}]},
            POD,
            SECRETS,
        )
    optional = {"env": [{"name": "A", "valueFrom": {"secretKeyRef": {**ref, "optional": True}}}]}
    assert resolve_env(optional, POD, SECRETS) == {}


def test_env_from_secret_with_prefix() -> None:
    env = resolve_env({"envFrom": [{"secretRef": {"name": "s3"}, "prefix": "S_"}]}, POD, SECRETS)
    assert env == {"S_key": "AKIA", "S_plain": "p"}


def test_expand_vars_leaves_unknown_references() -> None:
    assert expand_vars("$(A)-$(B)-$$(A)", {"A": "1"}) == "1-$(B)-$(A)"


def test_build_process_rewrites_scratch_ports_and_result_path(tmp_path: Path) -> None:
    pod = {**POD, "spec": {"volumes": [{"name": "scratch", "emptyDir": {}}]}}
    container = {
        "image": "ghcr.io/kubeloop/kubeloop-server:0.1.0",
        "args": ["serve", "--work-dir=/scratch/w"],
        "env": [
            {"name": "KUBELOOP_WORK_DIR", "value": "/scratch"},
            {"name": "KUBELOOP_PORT", "value": "8080"},
            {"name": "KUBELOOP_RESULT_PATH", "value": "/dev/termination-log"},
        ],
        "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
        "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {
            "httpGet": {"path": "/v2/health/ready", "port": "http"},
            "periodSeconds": 5,
        },
    }
    ports = itertools.count(41000)
    spec = build_process(
        pod,
        container,
        secrets={},
        pod_dir=tmp_path,
        free_port=lambda: next(ports),
        extra_env={"KUBECONFIG": "/k"},
    )
    scratch = tmp_path / "volumes" / "scratch"
    assert scratch.is_dir()
    assert spec.env["KUBELOOP_WORK_DIR"] == str(scratch)
    assert spec.env["KUBELOOP_PORT"] == "41000"
    assert spec.env["KUBELOOP_RESULT_PATH"] == str(spec.termination_path)
    assert spec.env["KUBECONFIG"] == "/k"
    assert spec.argv[-2:] == ["serve", f"--work-dir={scratch}/w"]
    assert spec.argv[0] in ("kubeloop", sys.executable)  # the image's entrypoint
    assert spec.readiness is not None
    assert spec.readiness.url == "http://127.0.0.1:41000/v2/health/ready"
    assert spec.ports == {8080: 41000}


def test_default_args_follow_the_image_cmd() -> None:
    assert default_args("ghcr.io/kubeloop/kubeloop-trainer:0.1.0") == ["train"]
    assert default_args("kubeloop-trainer-cuda@sha256:abc") == ["train"]
    assert default_args("registry/kubeloop-monitor") == ["monitor"]
    assert default_args("busybox") == []


def test_indexed_and_plain_completions() -> None:
    indexed: dict[str, Any] = {"spec": {"completions": 3, "completionMode": "Indexed"}}
    assert completion_indexes(indexed) == [0, 1, 2]
    assert completion_indexes({"spec": {}}) == [None]
    assert completion_indexes({"spec": {"completions": 2}}) == [None, None]


def test_indexed_pod_gets_its_index_and_local_master(tmp_path: Path) -> None:
    pod = {
        **POD,
        "metadata": {
            **POD["metadata"],
            "annotations": {"batch.kubernetes.io/job-completion-index": "2"},
        },
        "spec": {"subdomain": "churn-run-1"},
    }
    container = {
        "command": ["torchrun"],
        "env": [
            {"name": "MASTER_ADDR", "value": "churn-run-1-0.churn-run-1"},
            {"name": "MASTER_PORT", "value": "29500"},
        ],
    }
    spec = build_process(pod, container, secrets={}, pod_dir=tmp_path)
    assert spec.env["JOB_COMPLETION_INDEX"] == "2"
    assert spec.env["MASTER_ADDR"] == "127.0.0.1"
    assert spec.env["MASTER_PORT"] == "29500"
    assert spec.argv == ["torchrun"]


@pytest.mark.parametrize(
    ("limits", "threads"),
    [({"cpu": "1"}, 1), ({"cpu": "1500m"}, 2), ({"cpu": "250m"}, 1), ({"cpu": 4}, 4), ({}, None)],
)
def test_cpu_limit_sizes_the_native_thread_pools(
    tmp_path: Path, limits: dict[str, object], threads: int | None
) -> None:
    container = {
        "image": "ghcr.io/kubeloop/kubeloop-trainer:0.1.0",
        "resources": {"requests": {"cpu": "8"}, "limits": limits},
        "env": [{"name": "MKL_NUM_THREADS", "value": "3"}],
    }
    assert cpu_threads(container) == threads
    spec = build_process(POD, container, secrets={}, pod_dir=tmp_path)
    expected = None if threads is None else str(threads)
    assert spec.env.get("OMP_NUM_THREADS") == expected
    assert spec.env.get("OPENBLAS_NUM_THREADS") == expected
    assert spec.env["MKL_NUM_THREADS"] == "3"  # the container's own setting wins
