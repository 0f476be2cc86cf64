"""A counting proxy between an operator and the emulated API server, for bench/operator_bench.py.

Every request is relayed as is (a watch stream chunk by chunk) and counted by verb and
resource (`list pods`, `patch trainingpipelines/status`, ...). The proxy runs in its own
process, so its relaying does not share a GIL with the emulator it stands in front of:

    python -m bench.apicount http://127.0.0.1:PORT     # prints its own URL, serves until killed

`GET /_apicount` on the proxy answers the counts so far (that request is not counted); the
bench reads them at the edges of each window and subtracts.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import urllib.request
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["COUNTS_PATH", "CountingProxy", "classify", "main"]

COUNTS_PATH = "/_apicount"
_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"}
_VERBS = {"POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}


def classify(method: str, path: str, query: Mapping[str, str]) -> tuple[str, str]:
    """(verb, resource) of one API request, as kube-apiserver's audit log names them: `get`,
    `list`, `watch`, `create`, `patch`, `update`, `delete`; the resource is the plural, with
    `/subresource` when there is one. Discovery and other non-resource paths are `discovery`."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 3:
        rest = parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 4:
        rest = parts[3:]
    else:
        return method.lower(), "discovery"
    if rest[0] == "namespaces" and len(rest) >= 3:
        rest = rest[2:]  # namespaced: the plural follows the namespace
    plural, name, sub = rest[0], rest[1] if len(rest) > 1 else None, rest[2:]
    resource = "/".join([plural, *sub])
    if method == "GET":
        if name is not None:
            return "get", resource
        return ("watch" if query.get("watch") in ("true", "1") else "list"), resource
    return _VERBS.get(method, method.lower()), resource


async def _serve(upstream: str) -> None:
    from aiohttp import ClientSession, ClientTimeout, web

    counts: Counter[str] = Counter()
    session = ClientSession(timeout=ClientTimeout(total=None), auto_decompress=False)

    async def relay(request: web.Request) -> web.StreamResponse:
        if request.path == COUNTS_PATH:
            return web.json_response(dict(counts))
        verb, resource = classify(request.method, request.path, request.query)
        counts[f"{verb} {resource}"] += 1
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP | {"host"}}
        async with session.request(
            request.method, upstream + request.path_qs, data=await request.read(), headers=headers
        ) as answer:
            response = web.StreamResponse(status=answer.status)
            response.headers.update(
                {k: v for k, v in answer.headers.items() if k.lower() not in _HOP}
            )
            await response.prepare(request)
            try:
                async for chunk in answer.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
            except ConnectionResetError:
                pass  # the operator went away mid-stream (a watch when it stops)
            return response

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", relay)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server: Any = site._server
    print(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        await session.close()


class CountingProxy:
    """The proxy as a child process in front of `upstream`: `url` once started, `counts()`."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.url = ""
        self._child: subprocess.Popen[str] | None = None

    def __enter__(self) -> CountingProxy:
        self._child = subprocess.Popen(
            [sys.executable, "-m", "bench.apicount", self.upstream],
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
        assert self._child.stdout is not None
        self.url = self._child.stdout.readline().strip()
        if not self.url.startswith("http://"):
            self.__exit__()
            raise RuntimeError("the counting proxy did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._child is not None:
            self._child.kill()
            self._child.wait()

    def counts(self) -> Counter[str]:
        """Requests relayed so far, by `verb resource`."""
        with urllib.request.urlopen(self.url + COUNTS_PATH, timeout=30) as answer:
            return Counter(json.load(answer))


def main(argv: list[str] | None = None) -> int:
    """Serve the proxy in front of the API server at argv[0] until killed."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m bench.apicount UPSTREAM_URL", file=sys.stderr)
        return 2
    asyncio.run(_serve(args[0].rstrip("/")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
