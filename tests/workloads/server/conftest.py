"""Fixtures for the model server tests.

Nothing is faked: model versions are real sklearn models fitted here in `tmp_path` and written
with `kubeloop.modelformat` (manifest with sha256 of every file); the server runs as
`python -m kubeloop.cli serve` in a subprocess on a free loopback port, exactly as in a pod.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder
from threadpoolctl import threadpool_limits

from kubeloop.modelformat import write_manifest

ROOT = Path(__file__).resolve().parents[3]
PLANS = ("basic", "pro", "max")
# One OpenMP thread while fitting the tiny test models: with one thread per core on a busy
# 2-core machine, HistGradientBoosting's threads spin against each other (8 s instead of 0.4 s).
single_thread = threadpool_limits


def write_version(folder: Path, model: Any, manifest: dict[str, Any]) -> Path:
    """A version folder as the trainer writes it: model.joblib, then manifest.json last."""
    folder.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, folder / "model.joblib")
    write_manifest(folder, {"framework": "sklearn", **manifest})
    return folder


def churn_version(folder: Path, version: str = "3") -> Path:
    """Classifier on 3 numeric + 1 categorical feature; labels are strings."""
    rng = np.random.default_rng(7)
    n = 400
    age = rng.uniform(18, 80, n)
    income = rng.normal(50_000, 15_000, n)
    visits = rng.integers(0, 30, n).astype(np.float64)
    plan = rng.choice(PLANS, n)
    churn = np.where((visits < 10) & (plan == "basic") | (age > 70), "yes", "no")
    x = np.empty((n, 4), dtype=object)
    x[:, 0], x[:, 1], x[:, 2], x[:, 3] = age, income, visits, plan
    pre = ColumnTransformer(
        [
            ("num", "passthrough", [0, 1, 2]),
            (
                "cat",
                OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1),
                [3],
            ),
        ]
    )
    with single_thread(1):
        model = Pipeline(
            [("pre", pre), ("est", HistGradientBoostingClassifier(max_iter=20, random_state=0))]
        ).fit(x, churn)
    features = [
        {"name": "age", "dtype": "float64", "kind": "numeric", "categories": None},
        {"name": "income", "dtype": "float64", "kind": "numeric", "categories": None},
        {"name": "visits", "dtype": "int64", "kind": "numeric", "categories": None},
        {"name": "plan", "dtype": "string", "kind": "categorical", "categories": list(PLANS)},
    ]
    return write_version(
        folder,
        model,
        {
            "version": version,
            "task": "classification",
            "estimator": "HistGradientBoostingClassifier",
            "features": features,
            "target": {"name": "churned", "classes": ["no", "yes"]},
        },
    )


def numeric_version(folder: Path, *, task: str = "classification", n_features: int = 20) -> Path:
    """A bare HistGradientBoosting model on numeric features (the compiled fast path)."""
    rng = np.random.default_rng(11)
    x = rng.normal(size=(600, n_features))
    with single_thread(1):
        if task == "classification":
            y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
            model: Any = HistGradientBoostingClassifier(max_iter=30, random_state=0).fit(x, y)
            target = {"name": "label", "classes": [0, 1]}
        else:
            y = x[:, 0] * 3 + x[:, 2]
            model = HistGradientBoostingRegressor(max_iter=30, random_state=0).fit(x, y)
            target = {"name": "value", "classes": None}
    features = [
        {"name": f"f{i}", "dtype": "float64", "kind": "numeric", "categories": None}
        for i in range(n_features)
    ]
    return write_version(
        folder,
        model,
        {"version": "1", "task": task, "features": features, "target": target},
    )


def torch_version(folder: Path, *, n_features: int = 4) -> Path:
    """A torch MLP classifier as the trainer writes it: preprocess.joblib + model.pt (a
    state_dict, loaded with weights_only) + manifest.json with the architecture."""
    import torch
    from sklearn.preprocessing import StandardScaler

    from kubeloop.modelformat import build_mlp

    rng = np.random.default_rng(5)
    x = rng.normal(size=(200, n_features))
    folder.mkdir(parents=True, exist_ok=True)
    joblib.dump(StandardScaler().fit(x), folder / "preprocess.joblib")
    torch.manual_seed(0)
    net = build_mlp(n_features, [16], 0.1, 2)
    torch.save(net.state_dict(), folder / "model.pt")
    features = [
        {"name": f"f{i}", "dtype": "float64", "kind": "numeric", "categories": None}
        for i in range(n_features)
    ]
    write_manifest(
        folder,
        {
            "version": "2",
            "framework": "torch",
            "task": "classification",
            "architecture": {
                "inputs": n_features,
                "hiddenSizes": [16],
                "dropout": 0.1,
                "outputs": 2,
            },
            "features": features,
            "target": {"name": "label", "classes": ["a", "b"]},
        },
    )
    return folder


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_certificate(folder: Path) -> tuple[Path, Path, bytes]:
    """A test CA and a server certificate it signed for localhost and 127.0.0.1: the cert
    and key files (as a kubernetes.io/tls Secret holds them) and the CA's PEM."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("kubeloop test CA"))
        .issuer_name(_name("kubeloop test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = folder / "tls.crt", folder / "tls.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_file.chmod(0o600)
    return cert_file, key_file, ca.public_bytes(serialization.Encoding.PEM)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    """A running `kubeloop serve` subprocess."""

    process: subprocess.Popen[str]
    port: int
    log_path: Path
    # HTTPS: the client context that trusts the server's test CA (None: plain HTTP).
    tls: ssl.SSLContext | None = None
    grpc_port: int = 0  # the V2 gRPC endpoint (0: off)

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        # "localhost": the name the test certificates are issued for.
        return f"{scheme}://{'localhost' if self.tls else '127.0.0.1'}:{self.port}"

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        request = urllib.request.Request(self.url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=10, context=self.tls) as resp:
                body = resp.read()
                status = resp.status
        except urllib.error.HTTPError as exc:
            body, status = exc.read(), exc.code
        try:
            return status, json.loads(body)
        except ValueError:
            return status, body.decode()

    def post(self, path: str, doc: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        data = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        request = urllib.request.Request(
            self.url + path,
            data=data,
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        try:
            with urllib.request.urlopen(request, timeout=10, context=self.tls) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        return self.process.wait(timeout=30)


def start_server(
    tmp: Path,
    model_dir: Path,
    *,
    wait_ready: bool = True,
    tls: ssl.SSLContext | None = None,
    **env: str,
) -> Server:
    """Start `kubeloop serve` for a version folder; wait until ready (or at least live).

    `tls`: the client context for a server given KUBELOOP_TLS_CERT_FILE/KEY_FILE in `env`."""
    port, grpc_port = free_port(), free_port()
    log_path = tmp / f"server-{port}.log"
    full_env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "operator"),
        "KUBELOOP_MODEL_URI": model_dir.as_uri(),
        "KUBELOOP_MODEL_NAME": "churn",
        "KUBELOOP_HOST": "127.0.0.1",
        "KUBELOOP_PORT": str(port),
        "KUBELOOP_GRPC_PORT": str(grpc_port),
        "KUBELOOP_WORK_DIR": str(tmp),
        **env,
    }
    handle = log_path.open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "kubeloop.cli", "serve"],
        env=full_env,
        stdout=handle,
        stderr=subprocess.STDOUT,
        text=True,
    )
    server = Server(process, port, log_path, tls, int(full_env["KUBELOOP_GRPC_PORT"]))
    path = "/v2/health/ready" if wait_ready else "/v2/health/live"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{server.log()}")
        try:
            if server.get(path)[0] == 200:
                return server
        except OSError:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"server not {'ready' if wait_ready else 'live'} in 60 s:\n{server.log()}")


@pytest.fixture(scope="module")
def churn_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The churn classifier served with payload logging to a local folder."""
    tmp = tmp_path_factory.mktemp("churn")
    model = churn_version(tmp / "models" / "versions" / "3")
    server = start_server(
        tmp,
        model,
        KUBELOOP_PAYLOAD_LOG_URI=(tmp / "logs").as_uri(),
        KUBELOOP_PAYLOAD_FLUSH_SECONDS="0.2",
    )
    yield server
    server.stop()


def sigterm_under_load(
    server: Server,
    client: Callable[[int], None],
    *,
    workers: int,
    answered: Sized,
    at_least: int,
    stop: threading.Event,
) -> int:
    """Run `client(worker)` in `workers` threads until `at_least` requests were answered (at
    most 60 s), SIGTERM the server, wait for it, then stop and join the clients (each returns
    once `stop` is set); returns the server's exit code."""
    threads = [threading.Thread(target=client, args=(w,)) for w in range(workers)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while len(answered) < at_least and time.monotonic() < deadline:  # under load, then SIGTERM
        time.sleep(0.05)
    server.process.send_signal(signal.SIGTERM)
    code = server.process.wait(timeout=60)
    stop.set()
    for thread in threads:
        thread.join()
    return code
