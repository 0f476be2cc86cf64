"""A minimal async client for the emulated API over HTTP, as any controller would talk to it.

The pod runner reads and writes only through this: the operator sees its changes through the
same API (watch events, resourceVersions, the status subresource) as in a cluster.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aiohttp

__all__ = ["ApiError", "KubeApi", "resource_path"]

_MERGE = {"Content-Type": "application/merge-patch+json"}


class ApiError(RuntimeError):
    """A non-2xx answer from the API server."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


def resource_path(resource: str, namespace: str | None = None, name: str | None = None) -> str:
    """URL path of `group/version/plural` (core: `v1/plural`), optionally namespaced/named."""
    parts = resource.split("/")
    if len(parts) == 2:
        base, plural = f"/api/{parts[0]}", parts[1]
    else:
        base, plural = f"/apis/{parts[0]}/{parts[1]}", parts[2]
    path = base
    if namespace:
        path += f"/namespaces/{quote(namespace)}"
    path += f"/{plural}"
    if name:
        path += f"/{quote(name)}"
    return path


class KubeApi:
    """list/get/create/patch/delete against one API server URL (no auth: loopback only)."""

    def __init__(self, url: str, session: aiohttp.ClientSession | None = None) -> None:
        self.url = url.rstrip("/")
        self._session = session
        self._owned = session is None

    async def __aenter__(self) -> KubeApi:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        """The HTTP session (created on first use)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        return self._session

    async def close(self) -> None:
        """Close the session if this client created it."""
        if self._owned and self._session is not None:
            await self._session.close()
            self._session = None

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        async with self.session.request(method, self.url + path, **kwargs) as response:
            if response.status >= 300:
                text = await response.text()
                with contextlib.suppress(ValueError):
                    text = json.loads(text).get("message", text)
                raise ApiError(response.status, str(text)[:500])
            return await response.json(content_type=None)

    async def list(self, resource: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """All objects of a resource (all namespaces when `namespace` is None)."""
        body = await self._call("GET", resource_path(resource, namespace))
        items: list[dict[str, Any]] = body.get("items") or []
        return items

    async def get(self, resource: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        """One object, or None when it does not exist."""
        try:
            obj: dict[str, Any] = await self._call("GET", resource_path(resource, namespace, name))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return obj

    async def create(self, resource: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Create an object in its metadata.namespace."""
        namespace = (obj.get("metadata") or {}).get("namespace")
        created: dict[str, Any] = await self._call(
            "POST", resource_path(resource, namespace), json=obj
        )
        return created

    async def patch(
        self,
        resource: str,
        namespace: str | None,
        name: str,
        patch: dict[str, Any],
        *,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """JSON merge-patch an object or its subresource (`status`)."""
        path = resource_path(resource, namespace, name)
        if subresource:
            path += "/" + subresource
        patched: dict[str, Any] = await self._call("PATCH", path, json=patch, headers=_MERGE)
        return patched

    async def watch(self, resource: str) -> AsyncIterator[dict[str, Any]]:
        """The watch events of a resource in every namespace, from now, until the server
        ends the stream (the caller watches again; a relist covers what happened between)."""
        path = resource_path(resource) + "?watch=true"
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        async with self.session.get(self.url + path, timeout=timeout) as response:
            if response.status >= 300:
                raise ApiError(response.status, (await response.text())[:500])
            async for line in response.content:
                if line.strip():
                    event: dict[str, Any] = json.loads(line)
                    yield event

    async def delete(self, resource: str, namespace: str | None, name: str) -> None:
        """Delete an object; a missing one is not an error."""
        try:
            await self._call("DELETE", resource_path(resource, namespace, name))
        except ApiError as exc:
            if exc.status != 404:
                raise
