"""The local stack's kubeconfig: JSON (a standard-library reader needs no YAML parser), and a
kubeconfig the kubernetes client reads."""

from __future__ import annotations

import json
from pathlib import Path

from kubernetes import client, config

from kubeloop.local.cluster.stack import write_kubeconfig


def test_the_kubeconfig_is_json_that_the_kubernetes_client_reads(tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    write_kubeconfig(path, "http://127.0.0.1:8765")
    parsed = json.loads(path.read_text())
    assert parsed["current-context"] == "local"
    assert parsed["clusters"][0]["cluster"]["server"] == "http://127.0.0.1:8765"
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(path), client_configuration=configuration)
    assert configuration.host == "http://127.0.0.1:8765"
