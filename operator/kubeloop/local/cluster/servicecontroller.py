"""The local Service controller: a loopback proxy per Service port over the Ready pods.

Its endpoints are the Ready pods the selector matches (their named or numbered container port);
its URL is annotated on the Service as `kubeloop.io/local-url`. A gRPC port (`appProtocol:
grpc`) gets a per-connection TCP proxy instead of the HTTP/1 one, and its `host:port` is annotated
as `kubeloop.io/local-grpc-address`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from kubeloop.local.cluster.kubeapi import KubeApi
from kubeloop.local.cluster.kubelet import PodRun
from kubeloop.local.cluster.proxy import ServiceProxy
from kubeloop.local.cluster.tcpproxy import TcpServiceProxy, is_l4_port

__all__ = [
    "LOCAL_GRPC_ANNOTATION",
    "LOCAL_URL_ANNOTATION",
    "SERVICES",
    "Proxy",
    "ServiceController",
    "label_match",
]

LOCAL_URL_ANNOTATION = "kubeloop.io/local-url"
LOCAL_GRPC_ANNOTATION = "kubeloop.io/local-grpc-address"
Proxy = ServiceProxy | TcpServiceProxy
SERVICES = "v1/services"


def label_match(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Whether labels match a selector: a plain map (Service) or matchLabels/matchExpressions."""
    if not selector:
        return False
    if "matchLabels" in selector or "matchExpressions" in selector:
        plain = selector.get("matchLabels") or {}
        for expr in selector.get("matchExpressions") or []:
            key, op, values = expr["key"], expr["operator"], expr.get("values") or []
            if op == "In" and labels.get(key) not in values:
                return False
            if op == "NotIn" and labels.get(key) in values:
                return False
            if op == "Exists" and key not in labels:
                return False
            if op == "DoesNotExist" and key in labels:
                return False
    else:
        plain = selector
    return all(labels.get(k) == v for k, v in plain.items())


class ServiceController:
    """Proxies the Services of the emulated cluster (`proxies`, by namespace, name and port)."""

    def __init__(self, api: KubeApi) -> None:
        self.api = api
        self.proxies: dict[tuple[str, str, int], Proxy] = {}
        # A Service's port keeps its local port when its proxy is re-created.
        self._service_ports: dict[tuple[str, str, int], int] = {}

    async def drain(self, pod_name: str) -> None:
        """Take a pod out of every Service (before it is stopped)."""
        await asyncio.gather(*(proxy.drain(pod_name) for proxy in self.proxies.values()))

    async def stop(self) -> None:
        """Close every proxy."""
        for proxy in self.proxies.values():
            await proxy.stop()

    async def reconcile(self, pods: list[PodRun]) -> None:
        """One pass over the Services: a proxy per port, its endpoints the Ready `pods` it
        selects, its URL annotated; proxies of deleted Services stopped."""
        wanted: set[tuple[str, str, int]] = set()
        for service in await self.api.list(SERVICES):
            meta, spec = service["metadata"], service.get("spec") or {}
            selector = spec.get("selector")
            if not selector or spec.get("clusterIP") == "None":
                continue  # headless: DNS only, nothing to proxy
            urls: list[str] = []
            grpc: list[str] = []
            for port in spec.get("ports") or []:
                key = (meta["namespace"], meta["name"], int(port["port"]))
                wanted.add(key)
                proxy = self.proxies.get(key)
                kind = TcpServiceProxy if is_l4_port(port) else ServiceProxy
                if not isinstance(proxy, kind):
                    if proxy is not None:  # the port changed protocol
                        await proxy.stop()
                    proxy = kind(
                        f"{meta['namespace']}/{meta['name']}", self._service_ports.get(key, 0)
                    )
                    await proxy.start()
                    self._service_ports[key] = proxy.port
                    self.proxies[key] = proxy
                (grpc if kind is TcpServiceProxy else urls).append(proxy.url)
                target = port.get("targetPort", port["port"])
                endpoints = {}
                for pod in pods:
                    if pod.namespace != meta["namespace"] or not pod.ready or pod.terminating:
                        continue
                    if not label_match(selector, pod.pod["metadata"].get("labels") or {}):
                        continue
                    assert pod.main.process is not None
                    spec_ = pod.main.process.spec
                    local = (
                        spec_.named_ports.get(target)
                        if isinstance(target, str) and not target.isdigit()
                        else spec_.ports.get(int(target))
                    )
                    if local is not None:
                        endpoints[pod.name] = local
                proxy.set_endpoints(endpoints)
            annotations = meta.get("annotations") or {}
            wanted_annotations = {
                **({LOCAL_URL_ANNOTATION: urls[0]} if urls else {}),
                **({LOCAL_GRPC_ANNOTATION: grpc[0]} if grpc else {}),
            }
            changed = {k: v for k, v in wanted_annotations.items() if annotations.get(k) != v}
            if changed:
                await self.api.patch(
                    SERVICES,
                    meta["namespace"],
                    meta["name"],
                    {"metadata": {"annotations": changed}},
                )
        for key in list(self.proxies):
            if key not in wanted:
                await self.proxies.pop(key).stop()

    def service_url(self, namespace: str, name: str) -> str | None:
        """The loopback URL of a Service's first port, once it is proxied."""
        for (ns, svc, _), proxy in self.proxies.items():
            if (ns, svc) == (namespace, name) and isinstance(proxy, ServiceProxy):
                return proxy.url
        return None

    def grpc_address(self, namespace: str, name: str) -> str | None:
        """`host:port` of a Service's first gRPC port on loopback, once it is proxied."""
        for (ns, svc, _), proxy in self.proxies.items():
            if (ns, svc) == (namespace, name) and isinstance(proxy, TcpServiceProxy):
                return proxy.url
        return None
