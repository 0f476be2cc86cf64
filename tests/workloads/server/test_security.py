"""The server's bearer-token auth and TLS, on a real `kubeloop serve` process.

Nothing is faked: the token reaches the server as the env var a pod gets from its Secret, the
certificate is a real CA-signed one made here, and the client verifies it against that CA.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
from tests.workloads.server.conftest import Server, churn_version, make_certificate, start_server
from tritonclient.utils import InferenceServerException

from kubeloop.workloads.server.auth import REFUSALS, Verdict, check

TOKEN = "s3cret-token-4f9a1c"
ROW = {
    "inputs": [
        {"name": "age", "shape": [1], "datatype": "FP64", "data": [40.0]},
        {"name": "income", "shape": [1], "datatype": "FP64", "data": [52000.0]},
        {"name": "visits", "shape": [1], "datatype": "FP64", "data": [3.0]},
        {"name": "plan", "shape": [1], "datatype": "BYTES", "data": ["basic"]},
    ]
}
RIGHT = {"Authorization": f"Bearer {TOKEN}"}
GRPC_RIGHT = {"authorization": f"Bearer {TOKEN}"}  # gRPC metadata keys are lower case


@pytest.mark.parametrize(
    ("path", "header", "verdict"),
    [
        ("/v2/health/live", None, Verdict.OPEN),
        ("/v2/health/ready", None, Verdict.OPEN),
        ("/metrics", b"Bearer nope", Verdict.OPEN),
        ("/v2", None, Verdict.MISSING),
        ("/v2/openapi.json", None, Verdict.MISSING),
        ("/v2/models/churn/infer", None, Verdict.MISSING),
        ("/v2/models/churn/infer", b"Basic dXNlcjpwYXNz", Verdict.MISSING),
        ("/v2/models/churn/infer", b"Bearer ", Verdict.MISSING),
        ("/v2/models/churn/infer", b"Bearer s3cret", Verdict.INVALID),
        ("/v2/models/churn/infer", TOKEN.encode(), Verdict.MISSING),
        ("/v2/models/churn/infer", b"Bearer " + TOKEN.encode() + b"x", Verdict.INVALID),
        ("/v2/models/churn/infer", b"Bearer " + TOKEN.encode(), Verdict.ALLOWED),
        ("/v2/models/churn/infer", b"bearer  " + TOKEN.encode(), Verdict.ALLOWED),
        ("/v2/models/churn/ready", b"Bearer " + TOKEN.encode(), Verdict.ALLOWED),
        # Exact paths only: what only starts like an open one is not open.
        ("/metrics/../v2/models/churn/infer", None, Verdict.MISSING),
        ("/v2/health/live/x", None, Verdict.MISSING),
    ],
)
def test_check(path: str, header: bytes | None, verdict: Verdict) -> None:
    assert check(path, header, TOKEN.encode()) is verdict


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("auth")
    server = start_server(tmp, churn_version(tmp / "versions" / "3"), KUBELOOP_AUTH_TOKEN=TOKEN)
    yield server
    server.stop()


@pytest.mark.parametrize(
    ("headers", "challenge"),
    [
        ({}, 'Bearer realm="kubeloop"'),
        ({"Authorization": "Bearer wrong"}, 'Bearer realm="kubeloop", error="invalid_token"'),
        ({"Authorization": f"Basic {TOKEN}"}, 'Bearer realm="kubeloop"'),
    ],
)
@pytest.mark.parametrize("path", ["/v2/models/churn/infer", "/v2/models/churn", "/v2"])
def test_without_the_right_token_401(
    guarded: Server, path: str, headers: dict[str, str], challenge: str
) -> None:
    data = b"{}" if path.endswith("infer") else None
    request = urllib.request.Request(guarded.url + path, data=data, headers=headers)
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    assert caught.value.code == 401
    assert caught.value.headers["WWW-Authenticate"] == challenge
    assert "error" in json.loads(caught.value.read())


def test_right_token_200(guarded: Server) -> None:
    status, doc = guarded.post("/v2/models/churn/infer", ROW, headers=RIGHT)
    assert status == 200, doc
    assert doc["outputs"][0]["data"][0] in ("yes", "no")
    assert guarded.get("/v2/models/churn", headers=RIGHT)[0] == 200
    assert guarded.get("/v2/models/churn/ready", headers=RIGHT)[0] == 200
    assert guarded.get("/v2", headers=RIGHT)[0] == 200


def test_health_and_metrics_open(guarded: Server) -> None:
    guarded.post("/v2/models/churn/infer", ROW)  # refused: counted below
    assert guarded.get("/v2/health/live")[0] == 200
    assert guarded.get("/v2/health/ready")[0] == 200
    status, text = guarded.get("/metrics")
    assert status == 200
    refused = [
        line
        for line in text.splitlines()
        if line.startswith('kubeloop_inference_unauthorized_requests_total{model="churn"}')
    ]
    assert refused and float(refused[0].split()[-1]) >= 1
    # 401s are not inference requests: they would dilute the canary's error rate.
    assert 'code="401"' not in text


def test_token_never_logged(guarded: Server) -> None:
    guarded.post("/v2/models/churn/infer", ROW, headers={"Authorization": "Bearer " + TOKEN[:-1]})
    guarded.post("/v2/models/churn/infer", ROW, headers=RIGHT)
    log = guarded.log()
    assert "bearer-token auth on" in log
    assert TOKEN not in log and TOKEN[:-1] not in log


# ---- gRPC: the same token, as metadata --------------------------------------------------------


def _grpc_row() -> list[triton_grpc.InferInput]:
    out = []
    for item in ROW["inputs"]:
        tensor = triton_grpc.InferInput(item["name"], item["shape"], item["datatype"])
        kind = object if item["datatype"] == "BYTES" else np.float64
        tensor.set_data_from_numpy(np.array(item["data"], dtype=kind))
        out.append(tensor)
    return out


def _grpc_refusal(call: Any) -> str:
    with pytest.raises(InferenceServerException) as caught:
        call()
    assert caught.value.status() == "StatusCode.UNAUTHENTICATED", caught.value
    return str(caught.value.message())


def test_grpc_needs_the_same_token_as_metadata(guarded: Server) -> None:
    client = triton_grpc.InferenceServerClient(url=f"127.0.0.1:{guarded.grpc_port}")
    assert client.is_server_live() and client.is_server_ready()  # open, like /v2/health/*
    missing = _grpc_refusal(lambda: client.infer("churn", _grpc_row()))
    assert missing == REFUSALS[Verdict.MISSING]
    wrong = {"authorization": "Bearer wrong"}
    assert (
        _grpc_refusal(lambda: client.get_model_metadata("churn", headers=wrong))
        == (REFUSALS[Verdict.INVALID])
    )
    result = client.infer("churn", _grpc_row(), headers=GRPC_RIGHT)
    assert result.as_numpy("predict")[0].decode() in ("yes", "no")
    assert client.get_model_metadata("churn", headers=GRPC_RIGHT).name == "churn"


# ---- TLS ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", ["1", "2"])
def test_tls_serves_with_a_test_certificate(tmp_path: Path, workers: str) -> None:
    cert, key, ca = make_certificate(tmp_path / "tls")
    client = ssl.create_default_context(cadata=ca.decode())
    server = start_server(
        tmp_path,
        churn_version(tmp_path / "versions" / "3"),
        tls=client,
        KUBELOOP_TLS_CERT_FILE=str(cert),
        KUBELOOP_TLS_KEY_FILE=str(key),
        KUBELOOP_AUTH_TOKEN=TOKEN,
        KUBELOOP_WORKERS=workers,
    )
    try:
        assert server.url.startswith("https://")
        status, doc = server.post("/v2/models/churn/infer", ROW, headers=RIGHT)
        assert status == 200, doc
        assert server.post("/v2/models/churn/infer", ROW)[0] == 401
        assert server.get("/metrics")[0] == 200
        # A client that does not trust the test CA is refused by its own verification.
        untrusting = Server(
            server.process, server.port, server.log_path, ssl.create_default_context()
        )
        with pytest.raises(OSError, match="CERTIFICATE_VERIFY_FAILED"):
            untrusting.get("/v2/health/live")
        assert "HTTPS" in server.log()
        if workers == "1":  # gRPC over TLS, verified against the same CA, with the token
            (tmp_path / "ca.pem").write_bytes(ca)
            secure = triton_grpc.InferenceServerClient(
                url=f"localhost:{server.grpc_port}",
                ssl=True,
                root_certificates=str(tmp_path / "ca.pem"),
            )
            result = secure.infer(
                "churn", _grpc_row(), headers={"authorization": f"Bearer {TOKEN}"}
            )
            assert result.as_numpy("predict")[0].decode() in ("yes", "no")
    finally:
        assert server.stop() == 0


def test_tls_needs_cert_and_key(tmp_path: Path) -> None:
    cert, _key, _ca = make_certificate(tmp_path / "tls")
    with pytest.raises(RuntimeError, match="tls_cert_file and tls_key_file go together"):
        start_server(
            tmp_path,
            churn_version(tmp_path / "versions" / "3"),
            wait_ready=False,
            KUBELOOP_TLS_CERT_FILE=str(cert),
        )


def test_the_token_is_taken_from_the_environment_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """No `--auth-token` flag: a token on the command line shows in `ps` and in the pod's args."""
    from kubeloop.workloads.server.settings import parse_settings

    with pytest.raises(SystemExit):
        parse_settings(["--auth-token", TOKEN])
    monkeypatch.setenv("KUBELOOP_AUTH_TOKEN", TOKEN)
    settings = parse_settings(["--model-uri", "file:///models/churn/versions/3/"])
    assert settings.auth_token.get_secret_value() == TOKEN
