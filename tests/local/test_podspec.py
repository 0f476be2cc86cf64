"""Container spec -> local process: env as the kubelet builds it, mounts, ports, indexes."""

from __future__ import annotations

import base64
import itertools
import sys
from pathlib import Path
from typing import Any

import pytest

from kubeloop.local.cluster.podspec import (
    EnvError,
    build_process,
    completion_indexes,
    container_files,
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


@pytest.mark.parametrize(
    ("command", "argv"),
    [
        (["python", "train.py"], [sys.executable, "train.py"]),
        (["python3", "-c", "pass"], [sys.executable, "-c", "pass"]),
        (["/usr/local/bin/python", "x.py"], ["/usr/local/bin/python", "x.py"]),  # as written
        (["sh", "-c", "python x"], ["sh", "-c", "python x"]),
    ],
)
def test_the_image_python_is_this_interpreter(
    tmp_path: Path, command: list[str], argv: list[str]
) -> None:
    container = {"image": "registry.example.com/team/digits-train:1.4", "command": command}
    assert build_process(POD, container, secrets={}, pod_dir=tmp_path).argv == argv


@pytest.mark.parametrize(
    ("working_dir", "expected"),
    [
        (None, "start"),
        ("/app", "start"),  # the image's folder has no counterpart here: not an error
        ("/kubeloop/src", "volume"),  # under an emptyDir: the volume's folder, created
        ("EXISTING", "existing"),
    ],
)
def test_working_dir_is_used_when_it_exists_here_else_the_start_folder(
    tmp_path: Path, working_dir: str | None, expected: str
) -> None:
    start = tmp_path / "start"
    existing = tmp_path / "existing"
    start.mkdir()
    existing.mkdir()
    pod = {**POD, "spec": {"volumes": [{"name": "work", "emptyDir": {}}]}}
    container: dict[str, Any] = {
        "command": ["python", "train.py"],
        "volumeMounts": [{"name": "work", "mountPath": "/kubeloop"}],
    }
    if working_dir is not None:
        container["workingDir"] = str(existing) if working_dir == "EXISTING" else working_dir
    pod_dir = tmp_path / "pod"
    spec = build_process(pod, container, secrets={}, pod_dir=pod_dir, cwd=str(start))
    volume_src = pod_dir / "volumes" / "work" / "src"
    wanted = {"start": start, "existing": existing, "volume": volume_src}[expected]
    assert spec.cwd == str(wanted)
    assert Path(spec.cwd).is_dir()


def test_each_container_has_its_own_message_file_and_the_pod_one_volume(tmp_path: Path) -> None:
    pod = {**POD, "spec": {"volumes": [{"name": "work", "emptyDir": {}}]}}
    mount = [{"name": "work", "mountPath": "/kubeloop"}]
    env = [
        {"name": "DATA", "value": "/kubeloop/data"},
        {"name": "PYTHONPATH", "value": "/app/src:/kubeloop/sdk"},
    ]
    prepare = {"name": "prepare", "volumeMounts": mount, "env": env}
    publish = {"name": "publish", "volumeMounts": mount, "env": env}
    init = build_process(pod, prepare, secrets={}, pod_dir=tmp_path, init=True)
    main = build_process(pod, publish, secrets={}, pod_dir=tmp_path)
    volume = tmp_path / "volumes" / "work"
    assert init.env["DATA"] == main.env["DATA"] == str(volume / "data")
    assert main.env["PYTHONPATH"] == f"/app/src:{volume}/sdk"  # each entry of a search path
    assert init.termination_path == tmp_path / "termination-log.prepare"
    assert main.termination_path == tmp_path / "termination-log"  # where it always was
    assert init.env["KUBELOOP_RESULT_PATH"] == str(init.termination_path)
    assert container_files(tmp_path, "prepare", init=True).log == tmp_path / "log.prepare"
    assert container_files(tmp_path, "publish").log == tmp_path / "log"


def _secured_server_pod() -> tuple[dict[str, Any], dict[str, Any]]:
    """The pod and container the operator builds for a ModelDeployment with auth and TLS."""
    from kubeloop.api.deployment import ModelDeploymentSpec
    from kubeloop.resources.common import Owner, WorkloadDefaults
    from kubeloop.resources.serving import build_server_deployment

    spec = ModelDeploymentSpec.model_validate(
        {
            "model": {"uri": "s3://models/v/1"},
            "auth": {"tokenSecretRef": {"name": "churn-token", "key": "token"}},
            "tls": {"secretRef": {"name": "churn-tls"}},
        }
    )
    owner = Owner("kubeloop.io/v1alpha1", "ModelDeployment", "churn", "ml", "u-1")
    template = build_server_deployment(
        owner, spec, model_uri="s3://models/v/1", model_version="1", defaults=WorkloadDefaults()
    )["spec"]["template"]
    pod = {**POD, "spec": template["spec"]}
    return pod, template["spec"]["containers"][0]


TLS_SECRET = {
    "type": "kubernetes.io/tls",
    "data": {
        "tls.crt": base64.b64encode(b"-----BEGIN CERTIFICATE-----\n").decode(),
        "tls.key": base64.b64encode(b"-----BEGIN PRIVATE KEY-----\n").decode(),
        "ca.crt": base64.b64encode(b"not asked for").decode(),
    },
}


def test_secret_volume_becomes_the_pods_files_and_https_probe(tmp_path: Path) -> None:
    pod, container = _secured_server_pod()
    ports = itertools.count(42000)
    spec = build_process(
        pod,
        container,
        secrets={"churn-tls": TLS_SECRET, "churn-token": {"stringData": {"token": "t0k"}}},
        pod_dir=tmp_path,
        free_port=lambda: next(ports),
    )
    folder = tmp_path / "volumes" / "tls"
    assert sorted(p.name for p in folder.iterdir()) == ["tls.crt", "tls.key"]  # its items
    assert Path(spec.env["KUBELOOP_TLS_CERT_FILE"]) == folder / "tls.crt"
    assert Path(spec.env["KUBELOOP_TLS_KEY_FILE"]).read_text() == "-----BEGIN PRIVATE KEY-----\n"
    assert (folder / "tls.key").stat().st_mode & 0o777 == 0o440  # the volume's defaultMode
    assert spec.env["KUBELOOP_AUTH_TOKEN"] == "t0k"
    assert spec.readiness is not None
    assert spec.readiness.url == "https://127.0.0.1:42000/v2/health/ready"


def test_missing_tls_secret_or_key_is_a_config_error(tmp_path: Path) -> None:
    pod, container = _secured_server_pod()
    token = {"churn-token": {"stringData": {"token": "t0k"}}}
    with pytest.raises(EnvError, match="volume 'tls': secret 'churn-tls' not found"):
        build_process(pod, container, secrets=token, pod_dir=tmp_path, free_port=lambda: 1)
    no_key = {"data": {"tls.crt": TLS_SECRET["data"]["tls.crt"]}}
    with pytest.raises(EnvError, match=r"secret 'churn-tls' has no key 'tls\.key'"):
        build_process(
            pod,
            container,
            secrets={**token, "churn-tls": no_key},
            pod_dir=tmp_path,
            free_port=lambda: 1,
        )
