"""The server reads exactly what the operator's Deployment passes (docs/contracts.md, Server).

The container's command and env come from `kubeloop.resources.serving.build_server_deployment`;
the server is started with that env as it is, except the port and scratch folder (a free
loopback port and a temp dir, since this machine is not a pod).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import tritonclient.grpc as triton_grpc
from tests.workloads.server.conftest import numeric_version, start_server

from kubeloop.api.deployment import ModelDeploymentSpec
from kubeloop.resources.common import Owner, WorkloadDefaults
from kubeloop.resources.serving import GRPC_PORT, PORT, build_server_deployment
from kubeloop.workloads.server.settings import ServerSettings, parse_settings

# Common env every workload gets (docs/contracts.md, "Common env"); the server needs no result.
COMMON = {"KUBELOOP_NAMESPACE", "KUBELOOP_RESULT_PATH", "KUBELOOP_PUSHGATEWAY_URL"}


def _container(model_uri: str, logs: str) -> dict[str, Any]:
    spec = ModelDeploymentSpec.model_validate(
        {
            "model": {"uri": model_uri},
            "workers": 2,
            "batching": {"maxBatchSize": 16, "maxLatencyMs": 3.5},
            "payloadLogging": {"enabled": True, "sampleRate": 0.5, "destination": logs},
        }
    )
    owner = Owner("kubeloop.io/v1alpha1", "ModelDeployment", "churn", "ml", "uid-1")
    deployment = build_server_deployment(
        owner,
        spec,
        model_uri=model_uri,
        model_version="1",
        defaults=WorkloadDefaults(pushgateway_url="http://pgw:9091"),
    )
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(container)


def _values(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


def test_every_kubeloop_env_of_the_deployment_is_a_server_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    container = _container("s3://models/churn/versions/1", "s3://logs/churn/")
    assert container["command"] == ["kubeloop", "serve"] and "args" not in container
    env = _values(container)
    fields = {f"KUBELOOP_{name.upper()}" for name in ServerSettings.model_fields}
    unread = {k for k in env if k.startswith("KUBELOOP_")} - fields - COMMON
    assert not unread, f"the Deployment passes env the server ignores: {sorted(unread)}"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = parse_settings([])
    assert settings.model_uri == "s3://models/churn/versions/1"
    assert settings.model_name == "churn"
    assert settings.port == PORT
    assert settings.grpc_port == GRPC_PORT
    assert settings.workers == 2
    assert (settings.max_batch_size, settings.max_latency_ms) == (16, 3.5)
    assert settings.payload_log_uri == "s3://logs/churn/"
    assert settings.payload_sample_rate == 0.5
    assert settings.work_dir == "/scratch"  # the emptyDir: the root filesystem is read-only


def test_the_deployment_env_serves_and_answers_its_probes(tmp_path: Path) -> None:
    version = numeric_version(tmp_path / "versions" / "1", n_features=4)
    logs = tmp_path / "logs"
    container = _container(version.as_uri(), logs.as_uri())
    env = _values(container)
    env["KUBELOOP_WORK_DIR"] = str(tmp_path)  # /scratch in the pod
    env.pop("KUBELOOP_PORT")  # start_server picks free loopback ports
    env.pop("KUBELOOP_GRPC_PORT")
    assert container["command"] == ["kubeloop", "serve"]  # start_server runs `kubeloop.cli serve`
    server = start_server(tmp_path, version, **env)
    try:
        for probe in ("readinessProbe", "livenessProbe"):
            path = container[probe]["httpGet"]["path"]
            assert server.get(path)[0] == 200, path
        log = server.log()
        assert "2 workers" in log
        # both workers listen on the gRPC port too (SO_REUSEPORT), beside REST
        grpc_client = triton_grpc.InferenceServerClient(url=f"127.0.0.1:{server.grpc_port}")
        assert grpc_client.is_server_ready()
        doc = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [0.1] * 4}]}
        for _ in range(40):
            status, body = server.post("/v2/models/churn/infer", doc)
            assert status == 200, body
            assert body["model_name"] == "churn"
    finally:
        assert server.stop() == 0
    import pyarrow.dataset as ds

    logged = ds.dataset(str(logs), format="parquet", partitioning="hive").to_table().num_rows
    # sampleRate 0.5 reached the server: of 40 one-row requests, some but not all are logged
    # (all or none by chance: 2 in 2**40)
    assert 0 < logged < 40
