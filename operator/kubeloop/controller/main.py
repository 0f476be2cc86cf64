"""`kubeloop operator`: run kopf with kubeloop's settings.

Env (all optional):

- `KUBELOOP_TRAINER_IMAGE` / `KUBELOOP_TRAINER_GPU_IMAGE`: trainer images for CPU / GPU runs
- `KUBELOOP_SERVER_IMAGE` / `KUBELOOP_SERVER_GPU_IMAGE`: server images for CPU / GPU serving
  (default ghcr.io/kubeloop/trainer:0.1.0 / trainer-cuda:0.1.0).
- `KUBELOOP_SERVER_IMAGE`, `KUBELOOP_MONITOR_IMAGE`: workload images (ghcr.io/kubeloop/...:0.1.0).
- `KUBELOOP_PUSHGATEWAY_URL`: passed to every workload (default empty: off).
- `KUBELOOP_IMAGE_PULL_SECRETS`: comma-separated Secret names put into every workload pod's
  `imagePullSecrets` (default empty).
- `KUBELOOP_WORKLOAD_PLACEMENT`: JSON `{nodeSelector, tolerations, priorityClassName, affinity}`
  for every workload pod; a resource's `spec.resources` placement wins (nodeSelector merged key
  by key, the others replaced, affinity as a whole).
- `KUBELOOP_WORKLOAD_POD_LABELS`, `KUBELOOP_WORKLOAD_POD_ANNOTATIONS`: JSON objects of extra
  labels / annotations on every workload pod (the operator's own win).
- `KUBELOOP_WORKLOAD_SECURITY`: JSON `{runAsUser, runAsGroup, fsGroup}`, the ids workload pods
  run as (default 65532 each; null leaves one out for the platform to assign, e.g. OpenShift).
- `KUBELOOP_OPERATOR_NAMESPACE`, `KUBELOOP_OPERATOR_POD_LABELS` (JSON object): the operator's
  own pod, admitted by every ModelDeployment's NetworkPolicy (canary analysis); empty: none.
- `KUBELOOP_METRICS_SCRAPERS`: JSON list of NetworkPolicy peers (`namespaceSelector`,
  `podSelector`) those NetworkPolicies also admit: Prometheus (the chart's `metricsFrom`).
- `KUBELOOP_RESYNC_SECONDS`: timer period: cron resolution, canary steps, safety net (30).
- `KUBELOOP_RELIST_SECONDS`: how often the watch cache is checked against fresh lists, for
  objects deleted while no watch was open (600).
- `KUBELOOP_METRICS_PORT`: Prometheus `/metrics` (9090; 0 = off).
- `KUBELOOP_KUBE_SERVER`: a plain API URL (the emulator, `kubeloop local`); empty = in-cluster
  config, else kubeconfig.
- `KUBELOOP_LOG_LEVEL`: DEBUG, INFO (default), WARNING or ERROR; `--log-level` overrides it.
- `KUBELOOP_LOG_FORMAT`: `text` (default) or `json` (a JSON object a line: time, level,
  logger, message, object); `--log-format` overrides it. Any other value of either stops the
  operator at start with a message naming the variable.
- `KUBELOOP_LEASE_NAME`: leader election among replicas on this coordination.k8s.io/v1 Lease in
  `KUBELOOP_OPERATOR_NAMESPACE` (controller/leader.py); empty (default): no election, this
  process reconciles alone. `KUBELOOP_POD_NAME`: this replica's identity in the Lease (default:
  host name and process id). `KUBELOOP_LEASE_DURATION_SECONDS` (10) and
  `KUBELOOP_LEASE_RENEW_SECONDS` (3): the leader stops acting when it could not renew for their
  difference; a follower takes over once the lease ran out unrenewed, or at once when released.

The log (stderr) has a timestamp, the logger and the level on every line; object-scoped lines
say which object (`[namespace/name]` from kopf, `Kind namespace/name:` from kubeloop): every
Event the operator posts is also a log line, a warning for a Warning Event.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import threading
from collections.abc import Callable
from typing import Any

import kopf
import prometheus_client

from kubeloop.controller import kube
from kubeloop.controller.config import OperatorConfig
from kubeloop.controller.diffbase import ChangeHandledDiffBase
from kubeloop.controller.events import recorder
from kubeloop.controller.leader import Elector, FollowerProbe
from kubeloop.controller.observe import relist_slices, start_watching, stop_watching
from kubeloop.controller.resync import Resync
from kubeloop.controller.runtime import runtime
from kubeloop.controller.training import pipelines, resync
from kubeloop.logformat import (
    LOG_FORMATS,
    LOG_LEVELS,
    JsonLineFormatter,
    parse_format,
    parse_level,
)

__all__ = [
    "EVENT_FLUSH_SECONDS",
    "TIMER_EXIT_POLL_SECONDS",
    "WORKERS",
    "configure",
    "configure_logging",
    "follow",
    "leadership",
    "main",
]

# How often kopf checks whether a deleted object's timer has exited (then removes its finalizer).
TIMER_EXIT_POLL_SECONDS = 1.0
# How long a stopping operator waits for its queued Events to be sent.
EVENT_FLUSH_SECONDS = 5.0
# Threads running reconciles (kopf's pool for sync work). A reconcile mostly waits on the API
# server, so more of them in flight keep it busy: at 200 new pipelines 16 reached all Jobs in
# half the time of 8; 32 or 64 did worse again (the GIL).
WORKERS = 16


def configure(settings: kopf.OperatorSettings, config: OperatorConfig) -> None:
    """kopf's bookkeeping under kubeloop.io, and short, bounded retries."""
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="kubeloop.io")
    # Built only for the kinds with change handlers (controller/diffbase.py).
    settings.persistence.diffbase_storage = ChangeHandledDiffBase(
        prefix="kubeloop.io", key="last-handled-configuration"
    )
    settings.persistence.finalizer = "kubeloop.io/finalizer"
    # Our transitions are Events already (status.post_event, sent by controller/events.py);
    # kopf's "Handler succeeded" logs would add a POST per handler run and bury them. Its
    # warnings and errors still go out.
    settings.posting.level = logging.WARNING
    settings.execution.max_workers = WORKERS
    settings.batching.idle_timeout = 1.0
    settings.batching.batch_window = 0.1
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 30
    # No deletion handlers: children go by ownerReferences. But every timer makes kopf put its
    # finalizer on the object, and on a DELETE kopf holds it until the timer's task has exited.
    # A timer in the middle of a reconcile exits only when the reconcile returns, and kopf
    # looks again only after `cancellation_polling` (60 s by default): a delete that landed on
    # a resync in flight outlasted `kubectl delete`'s wait. A reconcile takes about a second.
    settings.background.cancellation_polling = TIMER_EXIT_POLL_SECONDS


# Allocations between two collections of the youngest generation (CPython's default: 700).
GC_GEN0_THRESHOLD = 10_000


def tune_gc() -> None:
    """Fewer, cheaper garbage collections. What is loaded by now (kopf, the client, the
    models: most of the heap) lives as long as the process: `gc.freeze` keeps collections
    from walking it again and again. And a burst of watch events allocates fast: with the
    default threshold the collector ran ~600 times in a burst of 1000 new pipelines, 0.73 s of
    the operator's CPU; with these settings 0.34 s (bench/operator_bench.py)."""
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, older, oldest)


def configure_logging(level: str, log_format: str = "text") -> None:
    """Lines on stderr at `level`: timestamped text with the object as a prefix (kopf's
    format), or one JSON object a line (`json`, kubeloop.logformat: time, level, logger,
    message, and `object` {kind, namespace, name} where the line is about one, kopf's own
    per-object lines included) for a log pipeline to index.

    kopf.run() leaves logging unconfigured, and Python's last-resort handler prints bare
    warnings without a time or an object: the operator's log looked empty.
    """
    name = parse_level(level, "log level")
    json_lines = parse_format(log_format, "log format") == "json"
    kopf.configure(debug=name == "DEBUG", log_prefix=not json_lines)
    if json_lines:
        # kopf.configure has just added its stream handler, the root logger's last; kopf's own
        # JSON format needs python-json-logger and names the fields differently.
        logging.getLogger().handlers[-1].setFormatter(JsonLineFormatter())
    logging.getLogger().setLevel(name)
    # kopf logs every probe it answers ("Activity 'leadership' succeeded."): a line per probe.
    logging.getLogger("kopf.activities.probe").setLevel(
        max(logging.WARNING, logging.getLevelName(name))
    )


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    config = OperatorConfig.from_env()
    configure(settings, config)
    tune_gc()
    runtime.executor = settings.execution.executor
    runtime.config = config
    # Every reconcile thread, every Event sender, the resync loop: each a connection of its own.
    runtime.kube = kube.connect(config.server or None)
    runtime.seen.clear()
    # Every slice listed into the cache before kopf runs any other handler; then the watches.
    # Meanwhile the probe URL answers (the lists retry while the API server fails them, and
    # kopf serves the URL only after this handler); then it is freed for kopf's.
    await start_watching(runtime.namespaces)
    await asyncio.to_thread(_close_start_probe)
    if runtime.resync is None:
        runtime.resync = Resync(
            config.resync_seconds,
            pipelines,
            resync,
            sweep=relist_slices,
            sweep_seconds=config.relist_seconds,
        )
        runtime.resync.start()
    if runtime.leader is not None:  # no write once the Lease may have run out
        runtime.kube.fence = runtime.leader.may_act
    _serve_metrics(config)


def _serve_metrics(config: OperatorConfig) -> None:
    if config.metrics_port and runtime.metrics_server is None:
        server, _thread = prometheus_client.start_http_server(config.metrics_port)
        runtime.metrics_server = server


@kopf.on.probe(id="leadership")
def leadership(**_: Any) -> dict[str, Any]:
    """kopf's probe endpoint says which replica this is: the leader (kopf runs only there)."""
    if runtime.leader is None:
        return {"role": "standalone"}
    return runtime.leader.describe()


@kopf.on.cleanup()
async def stop_informers(**_: Any) -> None:
    """The watches and the listener tasks end with the operator."""
    await stop_watching()


@kopf.on.cleanup()
def cleanup(**_: Any) -> None:
    """Stop serving /metrics, so a restarted operator (tests, `kubeloop local`) can bind again,
    and the resync loop, which a restarted operator starts anew; send the Events still queued
    (a short while: an API server that is gone does not hold the shutdown)."""
    resync, runtime.resync = runtime.resync, None
    if resync is not None:
        resync.stop()
    recorder.flush(EVENT_FLUSH_SECONDS)
    server = runtime.metrics_server
    if server is not None:
        runtime.metrics_server = None
        server.shutdown()
        server.server_close()


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    server = OperatorConfig.from_env().server
    if server:
        return kopf.ConnectionInfo(server=server, insecure=True)
    info: kopf.ConnectionInfo | None = kopf.login_with_service_account(
        **kwargs
    ) or kopf.login_with_kubeconfig(**kwargs)
    return info


def main(argv: list[str]) -> int:
    """Run the operator until SIGTERM; returns the exit status."""
    parser = argparse.ArgumentParser(prog="kubeloop operator", description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--namespace", action="append", default=[], help="watch only these")
    parser.add_argument("--peering", default="", help="kopf peering name (default: standalone)")
    parser.add_argument(
        "--liveness", default="http://0.0.0.0:8080/healthz", help="liveness endpoint URL"
    )
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        default=None,
        help="DEBUG, INFO, WARNING or ERROR (default: env KUBELOOP_LOG_LEVEL, else INFO)",
    )
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=None,
        help="text or json (default: env KUBELOOP_LOG_FORMAT, else text)",
    )
    args = parser.parse_args(argv)
    config = OperatorConfig.from_env()
    try:  # the flags are checked by argparse; the env here, named in the message
        level = args.log_level or parse_level(config.log_level)
        log_format = args.log_format or parse_format(config.log_format)
    except ValueError as error:
        parser.error(str(error))
    configure_logging(level, log_format)

    elector = None
    if config.leader_election.lease:
        elector = follow(config, args.liveness)
        if elector is None:
            return 0  # stopped while following
    runtime.namespaces = tuple(args.namespace)
    if args.liveness:  # until kopf serves it, at the end of its start (startup below)
        try:
            runtime.start_probe = FollowerProbe(args.liveness, _starting(elector))
        except OSError as error:  # kopf's own server will say so when it binds the port
            logging.getLogger("kubeloop.operator").warning(
                "the probe URL %s is not served while the operator starts: %s",
                args.liveness,
                error,
            )
    try:
        kopf.run(
            clusterwide=not args.namespace,
            namespaces=args.namespace,
            standalone=not args.peering,
            peering_name=args.peering or None,
            liveness_endpoint=args.liveness or None,
        )
    finally:
        _close_start_probe()
        if elector is not None:  # kopf has stopped writing: hand over at once
            elector.stop()
            elector.release()
            runtime.leader = None
    return 0


def _starting(elector: Elector | None) -> Callable[[], dict[str, Any]]:
    """What the probe URL answers while kopf starts: healthy, the role, and that it starts."""

    def describe() -> dict[str, Any]:
        role = elector.describe() if elector is not None else {"role": "standalone"}
        return {**role, "starting": True}

    return describe


def _close_start_probe() -> None:
    probe, runtime.start_probe = runtime.start_probe, None
    if probe is not None:
        probe.close()


def _exit_on_lost(why: str) -> None:
    """The leader could not renew in time, or saw another holder: stop every write now (the
    kubelet restarts the container, which then follows). Not a clean shutdown on purpose: kopf
    would go on writing its own bookkeeping while it stops."""
    del why  # logged by the elector
    for handler in logging.getLogger().handlers:
        handler.flush()
    os._exit(1)


def follow(config: OperatorConfig, liveness: str) -> Elector | None:
    """Wait until this replica holds the leader Lease, serving /metrics and the probe URL
    meanwhile; returns the elector (renewing on its thread), or None after SIGTERM/SIGINT."""
    _serve_metrics(config)
    elector = Elector(kube.connect(config.server or None), config.leader_election, _exit_on_lost)
    runtime.leader = elector
    stopping = threading.Event()
    handlers = {
        sig: signal.signal(sig, lambda *_: stopping.set())
        for sig in (signal.SIGTERM, signal.SIGINT)
    }
    probe = FollowerProbe(liveness, elector.describe) if liveness else None
    logging.getLogger("kubeloop.leader").info(
        "following: waiting for the leader lease %s/%s as %s",
        config.leader_election.namespace,
        config.leader_election.lease,
        config.leader_election.identity,
    )
    elector.start()
    try:
        while not elector.leading.wait(0.2):
            if stopping.is_set():
                elector.stop()
                runtime.leader = None
                return None
    finally:
        if probe is not None:
            probe.close()  # main serves it while kopf starts, then kopf does
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    return elector
