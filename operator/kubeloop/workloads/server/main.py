"""`kubeloop serve`: start N worker processes of the V2 server on one port, stop them gracefully.

SIGTERM (what Kubernetes sends): each worker reports not-ready at once, stops accepting,
lets in-flight requests finish (up to `shutdown_timeout_s`), finishes batches, and flushes the
payload log before it exits.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Any

from kubeloop.workloads.logsetup import configure_logging

__all__ = ["main"]

log = logging.getLogger("kubeloop.serve")

# One model thread per worker: OpenMP/BLAS pools sized to all cores fight each other (and the
# event loop) when several workers share a pod's CPUs, and small batches gain nothing from them.
_THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _size_loaded_pools(threads: str) -> None:
    """The variables above size the pools a native library creates when it loads; one already
    loaded (by a process that forked this one, as `kubeloop local`'s fork server does, or that
    embeds the server) keeps the size it had: set it here too."""
    if not threads.isdigit() or int(threads) < 1:
        return
    try:
        from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]
    except ImportError:  # no scikit-learn in this image: nothing of that kind was loaded
        return
    threadpool_limits(limits=int(threads))


def main(argv: list[str]) -> int:
    """Entry point of `kubeloop serve` (flags override `KUBELOOP_*` env)."""
    started = time.time()
    from kubeloop.workloads.server.settings import parse_settings

    settings = parse_settings(argv)
    for name in _THREAD_ENV:
        os.environ.setdefault(name, str(settings.model_threads))
    _size_loaded_pools(os.environ["OMP_NUM_THREADS"])
    configure_logging(force=True)
    # Whether auth and TLS are on, never the token itself.
    print(
        f"kubeloop serve: bearer-token auth {'on' if settings.auth_token else 'off'}, "
        f"{'HTTPS' if settings.tls_cert_file else 'HTTP'}",
        flush=True,
    )
    if settings.workers == 1:
        return _serve(settings.model_dump(), None, started)

    # Several processes share one listening socket; the kernel spreads connections.
    Path(settings.work_dir).mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(
        prefix="kubeloop-metrics-", dir=settings.work_dir
    )
    sock = socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((settings.host, settings.port))
    sock.listen(2048)
    sock.set_inheritable(True)
    context = multiprocessing.get_context("spawn")
    loaded = context.Value("i", 0)  # workers that have loaded the model: readiness needs all
    workers = [
        context.Process(
            target=_serve,
            args=(settings.model_dump(), sock, started, loaded),
            name=f"worker-{i}",
        )
        for i in range(settings.workers)
    ]
    for worker in workers:
        worker.start()
    print(
        f"kubeloop serve: {settings.workers} workers on {settings.host}:{sock.getsockname()[1]}",
        flush=True,
    )

    def forward(signum: int, _frame: FrameType | None) -> None:
        for worker in workers:
            if worker.pid is not None and worker.is_alive():
                os.kill(worker.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = []
    for worker in workers:
        worker.join()
        codes.append(worker.exitcode or 0)
    sock.close()
    return max(codes)


def _serve(
    settings_data: dict[str, Any],
    sock: socket.socket | None,
    started: float,
    loaded_workers: Any = None,
) -> int:
    """One worker process: uvicorn (uvloop + httptools) running the ASGI app."""
    import uvicorn

    from kubeloop.workloads.server.app import InferenceApp
    from kubeloop.workloads.server.auth import BearerAuth
    from kubeloop.workloads.server.headertimeout import header_timeout_protocol
    from kubeloop.workloads.server.settings import ServerSettings

    configure_logging(force=True)
    settings = ServerSettings(**settings_data)
    app = InferenceApp(settings, started_at=started, loaded_workers=loaded_workers)
    token = settings.auth_token.get_secret_value()
    asgi: Any = BearerAuth(app, token, app.metrics.unauthorized.inc) if token else app
    config = uvicorn.Config(
        asgi,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http=header_timeout_protocol(settings.header_timeout_s),
        lifespan="on",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=int(settings.shutdown_timeout_s) or None,
        backlog=2048,
        ssl_certfile=settings.tls_cert_file or None,
        ssl_keyfile=settings.tls_key_file or None,
    )
    server = _GracefulServer(config, app, reuse_port=sock is not None)
    # uvicorn re-raises the signal it handled once it has shut down, with the handler that was
    # there before it: make that a no-op, so a graceful SIGTERM ends with exit code 0.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: None)
    server.run(sockets=[sock] if sock is not None else None)
    return 0


class _GracefulServer:
    """uvicorn.Server that flips readiness off the moment SIGTERM arrives, and serves the V2
    gRPC endpoint beside REST on the same event loop (stopped first on shutdown, letting its
    in-flight calls finish, while the batcher still runs)."""

    def __new__(cls, config: Any, app: Any, *, reuse_port: bool) -> Any:
        import uvicorn

        settings = app.settings

        class Server(uvicorn.Server):
            grpc_server: Any = None

            async def serve(self, sockets: list[socket.socket] | None = None) -> None:
                if settings.grpc_port:
                    from kubeloop.workloads.server.grpc_service import start_grpc_server

                    self.grpc_server = await start_grpc_server(
                        app, settings.grpc_port, reuse_port=reuse_port
                    )
                await super().serve(sockets)

            async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
                if self.grpc_server is not None:
                    await self.grpc_server.stop(settings.shutdown_timeout_s or None)
                await super().shutdown(sockets)

            def handle_exit(self, sig: int, frame: FrameType | None) -> None:
                app.begin_shutdown()
                super().handle_exit(sig, frame)

        return Server(config)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
