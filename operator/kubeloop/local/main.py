"""`kubeloop local`: the whole loop on one machine, no cluster.

    kubeloop local up -f examples/local/          # API + operator + pod runner, until Ctrl-C
    kubeloop local down                            # stop the `up` of this state dir
    KUBECONFIG=.demo/kubeconfig kubectl get kubeloop -n ml   # real kubectl works against it
    kubeloop local get tp,md,dm [-n ml | -A] [-o wide]
    kubeloop local trigger cronjob/<name> -n ml    # like kubectl create job --from=cronjob/...
    kubeloop local demo                            # the `make demo` scenario

It is a faithful stand-in for a cluster for trying pipelines on a laptop, not a cluster: the
API is kmock's emulator (see kubeloop.local.cluster.emulator for what it does not emulate) and pods
are local processes (see kubeloop.local.cluster.podrunner for the fidelity limits).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path

from kubeloop.local.cluster.cronjobs import job_from_cronjob
from kubeloop.local.cluster.down import DOWN_TIMEOUT, stop_cluster
from kubeloop.local.cluster.kubeapi import ApiError, KubeApi
from kubeloop.local.cluster.stack import LocalStack, apply_objects, load_manifests, read_state
from kubeloop.local.cluster.statefile import ClusterRunningError, claim_state_dir
from kubeloop.local.printer import render_table, resolve_kind

__all__ = ["main"]

STATE_DIR = Path(".demo")


def _url(state_dir: Path) -> str:
    url = os.environ.get("KUBELOOP_LOCAL_URL") or read_state(state_dir).get("url")
    if not url:
        raise SystemExit(
            "no local cluster: start one with `kubeloop local up -f examples/local/` "
            "(or set KUBELOOP_LOCAL_URL)"
        )
    return str(url)


async def _get(args: argparse.Namespace) -> int:
    async with KubeApi(_url(args.state_dir)) as api:
        tables = []
        for name in args.kinds.split(","):
            kind = resolve_kind(name)
            namespace = None if args.all_namespaces else args.namespace
            try:
                items = await api.list(f"kubeloop.io/v1alpha1/{kind.plural}", namespace)
            except ApiError as exc:
                if exc.status != 404:
                    raise
                items = []
            if not items:
                where = "" if args.all_namespaces else f" in {args.namespace} namespace"
                print(f"No {kind.plural} found{where}.", file=sys.stderr)
                continue
            tables.append(
                render_table(
                    kind, items, wide=args.output == "wide", all_namespaces=args.all_namespaces
                )
            )
        print("\n\n".join(tables))
    return 0


async def _trigger(args: argparse.Namespace) -> int:
    kind, _, name = args.target.partition("/")
    if kind not in ("cronjob", "cronjobs", "cj") or not name:
        print("usage: kubeloop local trigger cronjob/<name> [-n NAMESPACE]", file=sys.stderr)
        return 2
    async with KubeApi(_url(args.state_dir)) as api:
        cronjob = await api.get("batch/v1/cronjobs", args.namespace, name)
        if cronjob is None:
            print(f"cronjob {args.namespace}/{name} not found", file=sys.stderr)
            return 1
        job = await api.create("batch/v1/jobs", job_from_cronjob(cronjob))
        print(f"job.batch/{job['metadata']['name']} created")
    return 0


def _console(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def _up(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with LocalStack(args.state_dir, restart_operator=True, report=_console) as stack:
            await _announce(stack, args)
            await stop.wait()
    except ClusterRunningError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


async def _announce(stack: LocalStack, args: argparse.Namespace) -> None:
    """Apply the files and say where everything is."""
    assert stack.api is not None
    if stack.replaced is not None:
        print(
            f"cleaned the state of an earlier `up` from {args.state_dir} that no longer runs "
            f"(pid {stack.replaced.pid}); this cluster starts empty"
        )
    for line in await apply_objects(stack.api, load_manifests(args.file)):
        print(line)
    print(
        f"API {stack.url}: export KUBECONFIG={stack.state_dir / 'kubeconfig'}; "
        "kubectl get kubeloop -n ml (or: kubeloop local get tp,md,dm)"
    )
    print(f"operator log {stack.operator_log}; pods under {args.state_dir}/cluster/pods/")
    print(
        "The operator is restarted when it exits. Ctrl-C or `kubeloop local down` stops "
        "everything; the API's objects are not kept.",
        flush=True,
    )


def _down(args: argparse.Namespace) -> int:
    code, lines = stop_cluster(args.state_dir, args.timeout)
    for line in lines:
        print(line, file=sys.stderr if code else sys.stdout)
    return code


def main(argv: list[str]) -> int:
    """Entry point of `kubeloop local`."""
    parser = argparse.ArgumentParser(prog="kubeloop local", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--state-dir", type=Path, default=STATE_DIR, help="where state, data and logs go"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="run API + operator + pod runner and apply files")
    up.add_argument("-f", "--file", type=Path, action="append", default=[], help="YAML file/dir")
    down = sub.add_parser("down", help="stop the `up` running from --state-dir")
    down.add_argument(
        "--timeout", type=float, default=DOWN_TIMEOUT, help="seconds before it is killed"
    )
    get = sub.add_parser("get", help="list custom resources with their printer columns")
    get.add_argument("kinds", help="comma-separated: tp,md,dm (or full names)")
    get.add_argument("-n", "--namespace", default="ml")
    get.add_argument("-A", "--all-namespaces", action="store_true")
    get.add_argument("-o", "--output", choices=["wide"], default=None)
    trigger = sub.add_parser("trigger", help="run a CronJob now (kubectl create job --from)")
    trigger.add_argument("target", help="cronjob/<name>")
    trigger.add_argument("-n", "--namespace", default="ml")
    demo = sub.add_parser("demo", help="the whole loop, with a live view and a report")
    demo.add_argument("--plain", action="store_true", help="no live view, log lines only")
    args = parser.parse_args(argv)

    if args.command == "demo":
        from kubeloop.local.demo.demo import run_demo

        try:  # before the demo replaces the data under the state dir
            claim_state_dir(args.state_dir)
        except ClusterRunningError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        return run_demo(args.state_dir, live=not args.plain)
    if args.command == "down":
        return _down(args)
    command = {"up": _up, "get": _get, "trigger": _trigger}[args.command]
    try:
        return asyncio.run(command(args))
    except KeyError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 1
