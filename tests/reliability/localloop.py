"""Shared pieces of the reliability experiments that run on `kubeloop local` (LocalStack):
a ModelDeployment of two churn model versions, polling, and a V2 client that keeps sending
requests through the Service's loopback URL and records who answered and what failed.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
from tests.workloads.server.conftest import churn_version

from kubeloop.local.cluster.kubeapi import KubeApi
from kubeloop.local.cluster.servicecontroller import LOCAL_URL_ANNOTATION

MD = "kubeloop.io/v1alpha1/modeldeployments"
NAMESPACE = "ml"
NAME = "churn"
REQUEST = {
    "inputs": [
        {"name": "age", "shape": [1], "datatype": "FP64", "data": [34.0]},
        {"name": "income", "shape": [1], "datatype": "FP64", "data": [52000.0]},
        {"name": "visits", "shape": [1], "datatype": "INT64", "data": [3]},
        {"name": "plan", "shape": [1], "datatype": "BYTES", "data": ["basic"]},
    ]
}


def two_versions(root: Path) -> tuple[Path, Path]:
    """Version folders 1 and 2 of the churn classifier (tests/workloads/server/conftest.py)."""
    return churn_version(root / "1", version="1"), churn_version(root / "2", version="2")


def model_deployment(uri: str, **spec: Any) -> dict[str, Any]:
    """A ModelDeployment of one replica serving the version folder at `uri`, plus `spec`."""
    return {
        "apiVersion": "kubeloop.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": NAME, "namespace": NAMESPACE},
        "spec": {"model": {"uri": uri}, "replicas": 1, **spec},
    }


async def md_status(api: KubeApi) -> dict[str, Any]:
    """The ModelDeployment's status ({} before the first write)."""
    status: dict[str, Any] = ((await api.get(MD, NAMESPACE, NAME)) or {}).get("status") or {}
    return status


async def serving(api: KubeApi, version: str) -> dict[str, Any] | None:
    """The status once `version` serves on ready replicas with no canary, else None."""
    status = await md_status(api)
    ok = status.get("modelVersion") == version and int(status.get("readyReplicas") or 0)
    return status if ok and not status.get("canary") else None


async def service_url(api: KubeApi) -> str | None:
    """The Service's loopback URL, once the pod runner proxies it."""
    service = await api.get("v1/services", NAMESPACE, NAME)
    annotations = ((service or {}).get("metadata") or {}).get("annotations") or {}
    url: str | None = annotations.get(LOCAL_URL_ANNOTATION)
    return url


class Traffic:
    """V2 requests one after another until `stop()`; never retries (a failure counts)."""

    def __init__(self, url: str, pause: float = 0.02) -> None:
        self.url = f"{url}/v2/models/{NAME}/infer"
        self.pause = pause
        self.answers: list[str] = []  # model_version of each 200
        self.failures: list[str] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin sending in the background."""
        self._task = asyncio.create_task(self._send())

    async def stop(self) -> None:
        """Stop and wait for the request in flight."""
        self._stop.set()
        if self._task is not None:
            await self._task

    async def answered(self, at_least: int = 1, since: int = 0) -> bool:
        """Whether `at_least` answers came after the first `since`."""
        return len(self.answers) - since >= at_least

    async def _send(self) -> None:
        async with aiohttp.ClientSession() as session:
            while not self._stop.is_set():
                try:
                    async with session.post(self.url, json=REQUEST) as response:
                        body = await response.json(content_type=None)
                        if response.status == 200:
                            self.answers.append(str(body.get("model_version")))
                        else:
                            self.failures.append(f"{response.status} {body}")
                except aiohttp.ClientError as exc:
                    self.failures.append(repr(exc))
                await asyncio.sleep(self.pause)  # real time on purpose: the client's pace
