"""The loop on a kind cluster: build and load the images, install the chart, apply the churn
examples with an in-cluster S3 server, wait for each condition, `helm test`, tear down.

Environment: KUBELOOP_E2E_KEEP=1 keeps the cluster; KUBELOOP_E2E_S3_IMAGE overrides the S3
server image; KUBELOOP_E2E_CUDA=1 also builds the CUDA trainer (large, unused without GPUs)."""

from __future__ import annotations

import os
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import find_tool

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = "kubeloop-e2e"
TAG = "e2e"
IMAGES = ["operator", "trainer", "server", "monitor"]
S3_IMAGE = os.environ.get(
    "KUBELOOP_E2E_S3_IMAGE", "quay.io/minio/minio:RELEASE.2025-04-22T22-12-26Z"
)
S3_KEY, S3_SECRET = "kubeloop", "kubeloop-e2e-secret"
EXAMPLES = ["churn-pipeline.yaml", "churn-deployment.yaml", "churn-monitor.yaml"]


def sh(*args: str, timeout: int = 900, input: str | None = None) -> str:
    proc = subprocess.run(
        args, cwd=ROOT, capture_output=True, text=True, timeout=timeout, input=input, check=False
    )
    assert proc.returncode == 0, f"{' '.join(args)}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def cluster(e2e_prerequisites: None) -> Iterator[dict[str, str]]:
    tools = {"helm": find_tool("helm"), "kubectl": find_tool("kubectl")}
    sh("kind", "create", "cluster", "--name", CLUSTER, "--wait", "180s", timeout=600)
    try:
        images = IMAGES + (["trainer-cuda"] if os.environ.get("KUBELOOP_E2E_CUDA") else [])
        for name in images:
            tag = f"kubeloop/{name}:{TAG}"
            sh("docker", "build", "-f", f"images/{name}/Dockerfile", "-t", tag, ".", timeout=3600)
            sh("kind", "load", "docker-image", tag, "--name", CLUSTER, timeout=600)
        yield tools
    finally:
        if not os.environ.get("KUBELOOP_E2E_KEEP"):
            subprocess.run(["kind", "delete", "cluster", "--name", CLUSTER], check=False)


S3_MANIFEST = f"""
apiVersion: v1
kind: Namespace
metadata: {{name: storage}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: s3, namespace: storage}}
spec:
  selector: {{matchLabels: {{app: s3}}}}
  template:
    metadata: {{labels: {{app: s3}}}}
    spec:
      containers:
        - name: s3
          image: {S3_IMAGE}
          args: [server, /data]
          env:
            - {{name: MINIO_ROOT_USER, value: {S3_KEY}}}
            - {{name: MINIO_ROOT_PASSWORD, value: {S3_SECRET}}}
          ports: [{{containerPort: 9000}}]
          readinessProbe: {{httpGet: {{path: /minio/health/ready, port: 9000}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: s3, namespace: storage}}
spec:
  selector: {{app: s3}}
  ports: [{{port: 9000}}]
"""

# Runs in the trainer image (boto3, pyarrow, numpy): buckets and a synthetic churn data set
# with the columns examples/churn-pipeline.yaml names.
SEED_DATA = textwrap.dedent(
    """
    import io, boto3, numpy as np, pyarrow as pa, pyarrow.parquet as pq
    s3 = boto3.client("s3")
    for bucket in ("datasets", "models", "logs"):
        s3.create_bucket(Bucket=bucket)
    rng = np.random.default_rng(0)
    n = 5000
    tenure = rng.integers(0, 72, n)
    charges = rng.uniform(20, 120, n).round(2)
    calls = rng.poisson(1.5, n)
    contract = rng.choice(["month-to-month", "one-year", "two-year"], n)
    payment = rng.choice(["card", "bank", "check"], n)
    logit = -1.5 + 0.04 * charges - 0.05 * tenure + 0.5 * calls + (contract == "month-to-month")
    churned = rng.uniform(size=n) < 1 / (1 + np.exp(-logit))
    table = pa.table({"tenure": tenure, "monthly_charges": charges,
                      "total_charges": (charges * tenure).round(2), "support_calls": calls,
                      "contract": contract, "payment_method": payment, "churned": churned})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    s3.put_object(Bucket="datasets", Key="churn/train/part-0.parquet", Body=buf.getvalue())
    print("seeded", n, "rows")
    """
)


def test_loop_on_kind(cluster: dict[str, str]) -> None:
    helm, kubectl = cluster["helm"], cluster["kubectl"]
    endpoint = "http://s3.storage.svc:9000"
    sh(kubectl, "apply", "-f", "-", input=S3_MANIFEST)
    sh(kubectl, "-n", "storage", "rollout", "status", "deployment/s3", "--timeout=300s")

    sh(
        helm, "install", "kubeloop", "charts/kubeloop",
        "--namespace", "kubeloop-system", "--create-namespace",
        "--set", f"image.repository=kubeloop/operator,image.tag={TAG},image.pullPolicy=Never",
        "--set", f"workloadImages.trainer=kubeloop/trainer:{TAG}",
        "--set", f"workloadImages.trainerGpu=kubeloop/trainer:{TAG}",
        "--set", f"workloadImages.server=kubeloop/server:{TAG}",
        "--set", f"workloadImages.monitor=kubeloop/monitor:{TAG}",
        "--set", "pushgateway.url=",
        "--wait", "--timeout", "5m",
        timeout=600,
    )  # fmt: skip
    for crd in ("trainingpipelines", "modeldeployments", "driftmonitors"):
        sh(kubectl, "wait", "--for=condition=Established", f"crd/{crd}.kubeloop.io")
    sh(helm, "test", "kubeloop", "--namespace", "kubeloop-system", "--timeout", "3m")

    sh(kubectl, "create", "namespace", "ml")
    sh(
        kubectl, "-n", "ml", "create", "secret", "generic", "s3-credentials",
        f"--from-literal=AWS_ACCESS_KEY_ID={S3_KEY}",
        f"--from-literal=AWS_SECRET_ACCESS_KEY={S3_SECRET}",
        "--from-literal=AWS_DEFAULT_REGION=us-east-1",
        f"--from-literal=AWS_ENDPOINT_URL={endpoint}",
    )  # fmt: skip
    sh(
        kubectl, "-n", "ml", "run", "seed", "--restart=Never", "--rm", "-i",
        f"--image=kubeloop/trainer:{TAG}", "--image-pull-policy=Never",
        f"--env=AWS_ACCESS_KEY_ID={S3_KEY}", f"--env=AWS_SECRET_ACCESS_KEY={S3_SECRET}",
        f"--env=AWS_ENDPOINT_URL={endpoint}", "--env=AWS_DEFAULT_REGION=us-east-1",
        "--command", "--", "python", "-c", SEED_DATA,
        timeout=600,
    )  # fmt: skip

    for example in EXAMPLES:
        sh(kubectl, "apply", "-f", f"examples/{example}")
    sh(kubectl, "-n", "ml", "wait", "--for=condition=Ready", "trainingpipeline/churn",
       "--timeout=900s", timeout=960)  # fmt: skip
    sh(kubectl, "-n", "ml", "wait", "--for=condition=Ready", "modeldeployment/churn",
       "--timeout=600s", timeout=660)  # fmt: skip
    sh(kubectl, "-n", "ml", "wait", "--for=condition=Ready", "driftmonitor/churn",
       "--timeout=300s", timeout=360)  # fmt: skip
    champion = sh(kubectl, "-n", "ml", "get", "trainingpipeline/churn",
                  "-o", "jsonpath={.status.champion.version}")  # fmt: skip
    assert champion, "the pipeline is Ready but has no champion"
