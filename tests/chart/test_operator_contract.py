"""The chart's operator Deployment says only what `kubeloop operator` reads today.

The rendered args go through the operator's real entry point (kubeloop.controller.main) with
`kopf.run` captured instead of started; the rendered env goes through the real
`OperatorConfig.from_env`. A flag the CLI does not parse, or an env name nothing reads, fails
here instead of in a crash-looping pod.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml

from kubeloop.controller import main as operator_main
from kubeloop.controller.config import OperatorConfig

from .helmlib import CHART, render

HERE = Path(__file__).parent
VALUE_FILES = {
    "default": None,
    "watch-namespaces": HERE / "values-watch-namespaces.yaml",
    "custom": HERE / "values-custom.yaml",
}
# Read by the Python runtime itself, not by kubeloop (tempfile).
RUNTIME_ENV = {"TMPDIR"}


def _values(name: str) -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    path = VALUE_FILES[name]
    if path is not None:
        for key, value in yaml.safe_load(path.read_text()).items():
            if isinstance(value, dict) and isinstance(values.get(key), dict):
                values[key] = {**values[key], **value}
            else:
                values[key] = value
    return values


def _operator(helm: str, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    path = VALUE_FILES[name]
    objs = render(helm, *(["-f", str(path)] if path else []))
    (deploy,) = [o for o in objs if o["kind"] == "Deployment"]
    (container,) = deploy["spec"]["template"]["spec"]["containers"]
    return deploy, container


class _Recording(dict[str, str]):
    """An os.environ stand-in that remembers every name looked up."""

    def __init__(self, data: dict[str, str]) -> None:
        super().__init__(data)
        self.read: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return super().__getitem__(key)


@pytest.mark.parametrize("value_set", list(VALUE_FILES))
def test_rendered_args_are_what_the_operator_cli_parses(
    helm: str, value_set: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    deploy, container = _operator(helm, value_set)
    values = _values(value_set)
    args = container["args"]
    assert args[0] == "operator"
    captured: dict[str, Any] = {}
    monkeypatch.setattr(kopf, "run", lambda **kwargs: captured.update(kwargs))
    # argparse exits (SystemExit 2) on any flag the operator does not know.
    assert operator_main.main(args[1:]) == 0
    namespaces = values["watchNamespaces"]
    assert captured["clusterwide"] is (not namespaces)
    assert captured["namespaces"] == namespaces
    # Standalone kopf (no peering) is safe only with one replica that is stopped first.
    assert captured["standalone"] is True and captured["peering_name"] is None
    assert deploy["spec"]["replicas"] == 1
    assert deploy["spec"]["strategy"] == {"type": "Recreate"}
    # Liveness and readiness hit kopf's own probe endpoint, on the port the flag opens.
    probe_port = values["operator"]["probePort"]
    assert captured["liveness_endpoint"] == f"http://0.0.0.0:{probe_port}/healthz"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["probes"] == probe_port
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "probes"}


@pytest.mark.parametrize("value_set", list(VALUE_FILES))
def test_rendered_env_is_what_the_operator_config_reads(
    helm: str, value_set: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, container = _operator(helm, value_set)
    values = _values(value_set)
    extra = {e["name"] for e in values["operator"]["extraEnv"]}
    env = {e["name"]: e["value"] for e in container["env"] if e["name"] not in extra}
    recording = _Recording(env)
    monkeypatch.setattr(os, "environ", recording)
    config = OperatorConfig.from_env()
    unread = set(env) - recording.read - RUNTIME_ENV
    assert not unread, f"the chart sets env the operator never reads: {sorted(unread)}"
    # ... and what it reads has the values the chart was given.
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert config.metrics_port == ports["metrics"] == values["operator"]["metricsPort"]
    assert config.resync_seconds == float(values["operator"]["resyncSeconds"])
    images = values["workloadImages"]
    assert config.workloads.trainer_image == images["trainer"]
    assert config.workloads.trainer_gpu_image == images["trainerGpu"]
    assert config.workloads.server_image == images["server"]
    assert config.workloads.monitor_image == images["monitor"]
    assert config.workloads.pushgateway_url == values["pushgateway"]["url"]
    assert config.server == ""  # in-cluster: the ServiceAccount, never a plain URL
