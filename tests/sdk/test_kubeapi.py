"""kubeloop_sdk.kubeapi: where the API server is, from a pod's service account or a
kubeconfig (JSON, or the one-cluster YAML that `kubeloop local` writes)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeloop_sdk.kubeapi import (
    ApiConfigError,
    find_endpoint,
    in_cluster_endpoint,
    kubeconfig_endpoint,
    parse_kubeconfig,
    status_path,
)

TWO_CLUSTERS = {
    "apiVersion": "v1",
    "kind": "Config",
    "clusters": [
        {"name": "a", "cluster": {"server": "https://a:6443", "certificate-authority": "ca.pem"}},
        {"name": "b", "cluster": {"server": "http://b:8080", "insecure-skip-tls-verify": True}},
    ],
    "users": [{"name": "ua", "user": {"token": "ta"}}, {"name": "ub", "user": {"token": "tb"}}],
    "contexts": [
        {"name": "ca", "context": {"cluster": "a", "user": "ua"}},
        {"name": "cb", "context": {"cluster": "b", "user": "ub"}},
    ],
    "current-context": "cb",
}


def test_a_json_kubeconfig_gives_its_current_context() -> None:
    assert parse_kubeconfig(json.dumps(TWO_CLUSTERS)) == {
        "server": "http://b:8080",
        "insecure-skip-tls-verify": "True",
        "token": "tb",
    }


def test_a_one_cluster_yaml_kubeconfig_is_read_without_a_yaml_parser() -> None:
    one = {
        **TWO_CLUSTERS,
        "clusters": TWO_CLUSTERS["clusters"][:1],
        "users": TWO_CLUSTERS["users"][:1],
        "contexts": TWO_CLUSTERS["contexts"][:1],
        "current-context": "ca",
    }
    assert parse_kubeconfig(yaml.safe_dump(one)) == {
        "server": "https://a:6443",
        "certificate-authority": "ca.pem",
        "token": "ta",
    }


def test_a_yaml_kubeconfig_of_two_clusters_asks_for_json() -> None:
    with pytest.raises(ApiConfigError, match=r"2 clusters.*JSON kubeconfig"):
        parse_kubeconfig(yaml.safe_dump(TWO_CLUSTERS), "kc.yaml")


def test_a_current_context_that_is_not_there_is_named() -> None:
    with pytest.raises(ApiConfigError, match="current-context 'gone'"):
        parse_kubeconfig(json.dumps({**TWO_CLUSTERS, "current-context": "gone"}))


def _one_ca_pem() -> str:
    """A real CA certificate (the first of certifi's bundle)."""
    import certifi

    bundle = Path(certifi.where()).read_text()
    end = "-----END CERTIFICATE-----"
    return bundle[bundle.index("-----BEGIN CERTIFICATE-----") : bundle.index(end) + len(end)]


def test_a_kubeconfig_endpoint_carries_token_and_tls(tmp_path: Path) -> None:
    pem = _one_ca_pem()
    config: dict[str, Any] = {**TWO_CLUSTERS, "current-context": "ca"}
    config["clusters"] = [
        {
            "name": "a",
            "cluster": {
                "server": "https://a:6443/",
                "certificate-authority-data": base64.b64encode(pem.encode()).decode(),
            },
        }
    ]
    path = tmp_path / "kc.json"
    path.write_text(json.dumps(config))
    endpoint = kubeconfig_endpoint(path)
    assert endpoint.server == "https://a:6443"
    assert endpoint.headers() == {"Authorization": "Bearer ta"}
    assert endpoint.tls is not None and len(endpoint.tls.get_ca_certs()) == 1  # that CA only
    assert endpoint.tls.check_hostname is True

    config["clusters"][0]["cluster"] = {
        "server": "https://a:6443",
        "insecure-skip-tls-verify": True,
    }
    path.write_text(json.dumps(config))
    tls = kubeconfig_endpoint(path).tls
    assert tls is not None and tls.check_hostname is False


def test_in_a_pod_the_service_account_is_used(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("first\n")
    env = {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"}
    endpoint = in_cluster_endpoint(env, tmp_path)
    assert endpoint is not None and endpoint.server == "https://[fd00::1]:443"
    assert endpoint.headers() == {"Authorization": "Bearer first"}
    (tmp_path / "token").write_text("rotated")  # projected tokens rotate: read per request
    assert endpoint.headers() == {"Authorization": "Bearer rotated"}
    assert in_cluster_endpoint({}, tmp_path) is None
    assert in_cluster_endpoint(env, tmp_path / "no-account") is None


def test_no_api_at_all_says_what_was_looked_for(tmp_path: Path) -> None:
    with pytest.raises(ApiConfigError, match=r"not in a pod.*no kubeconfig at .*set KUBECONFIG"):
        find_endpoint({"KUBECONFIG": str(tmp_path / "none")})


def test_the_status_path_quotes_names() -> None:
    assert status_path("ml", "a b") == (
        "/apis/kubeloop.io/v1alpha1/namespaces/ml/trainingpipelines/a%20b/status"
    )
