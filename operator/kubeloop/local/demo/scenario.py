"""The demo scenario, step by step: train → gate → serve → log → drift → retrain → roll out.

`run_scenario(state_dir)` is what `make demo` (`kubeloop local demo`) and the end-to-end test
run: the same code path. It starts a `LocalStack` (emulated API, the real operator process,
the pod runner), applies examples/local/churn.yaml with its file:// paths moved under
`state_dir`, and drives the loop only from outside, the way a person with kubectl and a V2
client would: it writes data files, sends traffic, runs the monitor's CronJob on demand
(`kubectl create job --from=cronjob/...`) and reads status. Every decision (promotion, drift
verdict, retrain request, canary steps) is the operator's and the workloads'.

Each wait names what should have happened and which component owns it, so a missing or broken
piece fails the demo loudly at its step instead of being papered over.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import yaml

from kubeloop.local.cluster.kubeapi import KubeApi
from kubeloop.local.cluster.processes import host_env
from kubeloop.local.cluster.servicecontroller import LOCAL_URL_ANNOTATION
from kubeloop.local.cluster.stack import LocalStack, apply_objects
from kubeloop.local.demo.datagen import (
    FEATURES,
    churn_labels,
    churn_table,
    digits_table,
    write_demo_data,
)
from kubeloop.local.demo.labels import labelled_requests, write_labels
from kubeloop.local.demo.traffic import TrafficStats, V2Traffic

__all__ = [
    "CHURN",
    "DIGITS",
    "DemoData",
    "DemoError",
    "DemoResult",
    "DriftCheck",
    "Observer",
    "new_check",
    "run_scenario",
]

T = TypeVar("T")
NAMESPACE = "ml"
TP, MD, DM = (
    "kubeloop.io/v1alpha1/trainingpipelines",
    "kubeloop.io/v1alpha1/modeldeployments",
    "kubeloop.io/v1alpha1/driftmonitors",
)
EXAMPLE = Path(__file__).resolve().parents[4] / "examples" / "local" / "churn.yaml"
# What the scenario removes from a previous run under the state dir (never anything else).
OWNED = (
    "data",
    "models",
    "logs",
    "labels",
    "cluster",
    "report.html",
    "operator.log",
    "local.json",
)
BASELINE_ROWS, SHIFTED_ROWS, TRAIN_ROWS = 600, 1200, 3000


@dataclass(frozen=True)
class DemoData:
    """What a loop runs on: `write(root)` writes `<root>/<name>/train` (what v1 trains on) and
    `<root>/<name>/fresh` (labelled rows after the shift, copied over train before the
    retrain); `traffic(phase)` gives the feature rows a client sends in each phase
    (`baseline`, `shifted`, `rollout`); `label(rows)` their true labels, which the scenario
    delivers as delayed labels when the DriftMonitor has spec.performance (None: no labels)."""

    name: str
    write: Callable[[Path], object]
    traffic: Callable[[str], pa.Table]
    describe: str
    label: Callable[[pa.Table], pa.Array] | None = None


# phase -> (rows, seed, shifted): what the client sends, whatever the data
_PHASES = {
    "baseline": (BASELINE_ROWS, 100, False),
    "shifted": (SHIFTED_ROWS, 101, True),
    "rollout": (1000, 102, True),
}


def _churn_traffic(phase: str) -> pa.Table:
    rows, seed, shift = _PHASES[phase]
    return churn_table(rows, seed=seed, shift=shift).select(FEATURES)


def _write_digits(root: Path) -> None:
    for name, table in (
        ("train", digits_table(seed=1)),
        ("fresh", digits_table(seed=2, shift=True)),
    ):
        folder = root / "digits" / name
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, folder / "part-0.parquet")


def _digits_traffic(phase: str) -> pa.Table:
    rows, seed, shift = _PHASES[phase]
    return digits_table(seed=seed, shift=shift, rows=rows).drop_columns(["label"])


CHURN = DemoData(
    "churn",
    lambda root: write_demo_data(root, rows=TRAIN_ROWS),
    _churn_traffic,
    f"{TRAIN_ROWS} baseline customers",
    lambda rows: churn_labels(rows, seed=9),
)
DIGITS = DemoData(
    "digits", _write_digits, _digits_traffic, "scikit-learn's 1797 digits (8x8 images)"
)
# A step that has not happened after this long is broken, not slow (each takes seconds on an
# idle machine; the bound is generous for shared, overloaded CI machines).
STEP_TIMEOUT = 420.0


class DemoError(RuntimeError):
    """A step did not happen; the message names the step, what was seen and who owns it."""


class Observer(Protocol):
    """Who watches the scenario (the live view, the plain log, a test)."""

    def step(self, text: str) -> None:
        """A step began or ended."""

    async def attach(self, api: KubeApi) -> None:
        """The API is up: start showing the resources."""

    async def detach(self) -> None:
        """The stack is going down."""


class _Silent:
    def step(self, text: str) -> None:
        pass

    async def attach(self, api: KubeApi) -> None:
        pass

    async def detach(self) -> None:
        pass


@dataclass
class DriftCheck:
    """One run of the DriftMonitor's CronJob, as the DriftMonitor's status reports it."""

    job: str
    verdict: str
    drift_share: float | None
    rows: int | None
    model_version: str | None
    features: dict[str, dict[str, Any]]
    retrain_requested_at: str | None
    # status.performance (spec.performance: measured on the delayed labels), None without it
    performance: dict[str, Any] | None = None


@dataclass
class DemoResult:
    """Everything the scenario observed; the summary, the report and the test read this."""

    state_dir: Path
    seconds: float = 0.0
    steps: list[tuple[str, float]] = field(default_factory=list)
    pipeline: dict[str, Any] = field(default_factory=dict)
    deployment: dict[str, Any] = field(default_factory=dict)
    checks: list[DriftCheck] = field(default_factory=list)
    traffic: list[TrafficStats] = field(default_factory=list)
    # distinct (modelVersion, canary version, canary percent) states of the ModelDeployment
    deployment_states: list[tuple[str | None, str | None, int | None]] = field(default_factory=list)
    # the ModelDeployment's CanaryStarted/CanaryStep/Promoted/RolledBack Events, oldest first:
    # each step's message carries the canary analysis verdict that let it through
    canary_messages: list[str] = field(default_factory=list)
    # `kubeloop local get tp,md,dm -n ml` at the end, run as the command a person types
    get_output: str = ""
    logged_rows: int = 0
    logged_request_ids: set[str] = field(default_factory=set)
    report: Path | None = None

    @property
    def rows_sent(self) -> int:
        """Rows answered with 200 over all phases (what the payload log must hold)."""
        return sum(t.rows_ok for t in self.traffic)

    @property
    def request_ids_ok(self) -> set[str]:
        """Ids of the requests answered with 200 over all phases."""
        return {i for t in self.traffic for i in t.answered}

    def phase(self, name: str) -> TrafficStats:
        """The traffic of one phase (`baseline`, `shifted`, `rollout`)."""
        for stats in self.traffic:
            if stats.phase == name:
                return stats
        raise KeyError(name)


def _status(obj: dict[str, Any] | None) -> dict[str, Any]:
    return dict((obj or {}).get("status") or {})


def new_check(status: Mapping[str, Any], earlier: set[str]) -> str | None:
    """The Job of the check a DriftMonitor's status records, when it is one triggered (or
    scheduled) after the Jobs `earlier` existed and it has a verdict; else None."""
    last = status.get("lastJob")
    if not last or str(last) in earlier or not status.get("verdict"):
        return None
    return str(last)


async def _wait(
    what: str,
    probe: Callable[[], Awaitable[T | None]],
    *,
    timeout: float,
    owner: str,
    seen: Callable[[], Awaitable[str]] | None = None,
    interval: float = 0.5,
) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            last = await seen() if seen is not None else ""
            raise DemoError(
                f"{what}: did not happen within {timeout:.0f}s. Owner: {owner}."
                + (f" Last seen: {last}" if last else "")
            )
        await asyncio.sleep(interval)


def _manifests(state_dir: Path, example: Path) -> list[dict[str, Any]]:
    if not example.exists():
        raise DemoError(f"{example} is missing: the demo applies it (run from a Kubeloop checkout)")
    text = example.read_text().replace("file://.demo/", f"file://{state_dir}/")
    return [doc for doc in yaml.safe_load_all(text) if doc]


def _payload_log(destination: str) -> tuple[int, set[str]]:
    """Rows and distinct request ids in a file:// payload log (0 when nothing is written)."""
    root = Path(destination.removeprefix("file://"))
    files = sorted(root.rglob("*.parquet")) if root.exists() else []
    if not files:
        return 0, set()
    table = ds.dataset([str(f) for f in files], format="parquet").to_table(columns=["_request_id"])
    return table.num_rows, set(table.column("_request_id").to_pylist())


class Scenario:
    """The steps, sharing the stack, the API and what was observed so far."""

    def __init__(
        self,
        state_dir: Path,
        observer: Observer,
        example: Path = EXAMPLE,
        data: DemoData = CHURN,
        workload_env: Mapping[str, str] | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.workload_env = dict(workload_env or {})
        self.observer = observer
        self.result = DemoResult(state_dir)
        self.t0 = time.monotonic()
        self.stack: LocalStack | None = None
        self.docs = _manifests(state_dir, example)
        self.data = data
        # The three resources share one name (examples/local/churn.yaml: `churn`).
        self.name = next(
            d["metadata"]["name"] for d in self.docs if d["kind"] == "TrainingPipeline"
        )
        self.destination = next(
            d["spec"]["payloadLogging"]["destination"]
            for d in self.docs
            if d["kind"] == "ModelDeployment"
        )
        # Where the client delivers the delayed labels: the DriftMonitor's spec.performance.
        self.labels_uri: str | None = next(
            (
                d["spec"]["performance"]["labels"]["uri"]
                for d in self.docs
                if d["kind"] == "DriftMonitor" and d["spec"].get("performance")
            ),
            None,
        )

    @property
    def api(self) -> KubeApi:
        assert self.stack is not None and self.stack.api is not None
        return self.stack.api

    def step(self, text: str) -> None:
        elapsed = time.monotonic() - self.t0
        self.result.steps.append((text, elapsed))
        self.observer.step(text)

    async def get(self, resource: str) -> dict[str, Any]:
        return _status(await self.api.get(resource, NAMESPACE, self.name))

    def _operator_check(self) -> None:
        assert self.stack is not None
        if not self.stack.operator_alive():
            log = self.stack.operator_log
            tail = log.read_text(errors="replace").splitlines()[-15:] if log.exists() else []
            raise DemoError("the operator process exited; last lines:\n" + "\n".join(tail))

    # -- steps -----------------------------------------------------------------------------

    def prepare_data(self) -> None:
        for name in OWNED:
            path = self.state_dir / name
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        self.data.write(self.state_dir / "data")
        self.step(f"data: {self.data.describe} under {self.state_dir / 'data'}")

    async def wait_champion(self, version: str, runs: int, timeout: float) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            self._operator_check()
            status = await self.get(TP)
            finished = status.get("runs") or []
            if len(finished) >= runs:
                newest = finished[0]
                if newest.get("result") != "Promoted":
                    raise DemoError(
                        f"run {newest.get('id')} ended {newest.get('result')}: "
                        f"{newest.get('message')} (trainer log under "
                        f"{self.state_dir / 'cluster' / 'pods'})"
                    )
            champion = status.get("champion") or {}
            return status if champion.get("version") == version else None

        async def seen() -> str:
            status = await self.get(TP)
            return str({k: status.get(k) for k in ("phase", "currentRun", "runs", "champion")})

        return await _wait(
            f"TrainingPipeline {self.name}: version {version} trained and promoted",
            probe,
            timeout=timeout,
            owner="the TrainingPipeline controller (controller/training.py) and `kubeloop "
            "train` (workloads/trainer)",
            seen=seen,
        )

    async def track_deployment(self, stop: asyncio.Event) -> None:
        states = self.result.deployment_states
        while not stop.is_set():
            with contextlib.suppress(Exception):
                status = await self.get(MD)
                canary = status.get("canary") or {}
                state = (
                    status.get("modelVersion"),
                    canary.get("version"),
                    canary.get("trafficPercent"),
                )
                if state[0] is not None and (not states or states[-1] != state):
                    states.append(state)
                    version, canary_version, percent = state
                    self.step(
                        f"ModelDeployment {self.name}: serving v{version}"
                        + (f", canary v{canary_version} at {percent}%" if canary_version else "")
                    )
            await asyncio.sleep(0.5)

    async def wait_serving(self, version: str, timeout: float) -> V2Traffic:
        replicas = next(d for d in self.docs if d["kind"] == "ModelDeployment")["spec"].get(
            "replicas", 1
        )

        async def probe() -> V2Traffic | None:
            self._operator_check()
            status = await self.get(MD)
            if status.get("modelVersion") != version or status.get("canary"):
                return None
            if int(status.get("readyReplicas") or 0) < int(replicas):
                return None
            service = await self.api.get("v1/services", NAMESPACE, self.name)
            url = ((service or {}).get("metadata", {}).get("annotations") or {}).get(
                LOCAL_URL_ANNOTATION
            )
            if not url:
                return None
            traffic = V2Traffic(url, self.name)
            return traffic if await traffic.ready() else None

        async def seen() -> str:
            status = await self.get(MD)
            service = await self.api.get("v1/services", NAMESPACE, self.name)
            return f"status={status}; service={'present' if service else 'missing'}"

        return await _wait(
            f"ModelDeployment {self.name}: version {version} on all {replicas} replicas, V2 ready "
            "through the Service",
            probe,
            timeout=timeout,
            owner="the ModelDeployment controller (controller/deployment.py) and `kubeloop "
            "serve` (workloads/server)",
            seen=seen,
        )

    async def _cronjob(self) -> str:
        async def probe() -> str | None:
            monitor = await self.api.get(DM, NAMESPACE, self.name)
            uid = (monitor or {}).get("metadata", {}).get("uid")
            for cronjob in await self.api.list("batch/v1/cronjobs", NAMESPACE):
                owners = cronjob["metadata"].get("ownerReferences") or []
                if uid and any(o.get("uid") == uid for o in owners):
                    return str(cronjob["metadata"]["name"])
            return None

        return await _wait(
            f"DriftMonitor {self.name}: its CronJob exists",
            probe,
            timeout=30,
            owner="the DriftMonitor controller (controller/monitor.py)",
            seen=lambda: _describe(self, DM),
        )

    async def check_drift(self, timeout: float) -> DriftCheck:
        """Run the monitor's CronJob now and wait for the DriftMonitor to report the verdict."""
        assert self.stack is not None and self.stack.runner is not None
        cronjob = await self._cronjob()
        # The checks that ran before this one. The example's schedule may fire meanwhile
        # (*/30: on the wall clock's half hours): a scheduled check created after this one
        # checks the same window, and when both end between two reconciles only the newer is
        # recorded (status holds the latest check), so either counts as this check's verdict.
        earlier = {j["metadata"]["name"] for j in await self.api.list("batch/v1/jobs", NAMESPACE)}
        job = await self.stack.runner.trigger(NAMESPACE, cronjob)
        job_name = str(job["metadata"]["name"])
        self.step(f"monitor: job.batch/{job_name} created from cronjob/{cronjob}")

        async def probe() -> DriftCheck | None:
            self._operator_check()
            status = await self.get(DM)
            last = new_check(status, earlier)
            if last is None:
                return None
            return DriftCheck(
                job=last,
                verdict=str(status["verdict"]),
                drift_share=status.get("driftShare"),
                rows=status.get("rows"),
                model_version=status.get("modelVersion"),
                features=dict(status.get("features") or {}),
                retrain_requested_at=status.get("retrainRequestedAt"),
                performance=status.get("performance"),
            )

        async def seen() -> str:
            found = await self.api.get("batch/v1/jobs", NAMESPACE, job_name)
            assert self.stack is not None and self.stack.runner is not None
            pods = self.stack.runner.describe_job(NAMESPACE, job_name)
            return f"job status={_status(found)}; DriftMonitor status={await self.get(DM)}\n{pods}"

        check = await _wait(
            f"DriftMonitor {self.name}: verdict of {job_name} in its status",
            probe,
            timeout=timeout,
            owner="`kubeloop monitor` (workloads/monitor) and the DriftMonitor controller "
            "(controller/monitor.py)",
            seen=seen,
        )
        if check.verdict == "Failed":
            raise DemoError(f"the drift check {job_name} failed: {await self.get(DM)}")
        self.result.checks.append(check)
        return check

    async def wait_logged(self, timeout: float) -> None:
        """Until the payload log holds every row answered so far (the servers flush every 5s)."""

        async def probe() -> bool:
            rows, ids = _payload_log(self.destination)
            self.result.logged_rows, self.result.logged_request_ids = rows, ids
            return rows >= self.result.rows_sent

        async def seen() -> str:
            return f"{self.result.logged_rows} rows logged, {self.result.rows_sent} answered"

        await _wait(
            f"payload log {self.destination}: every answered row logged",
            probe,
            timeout=timeout,
            owner="the model server's payload logger (workloads/server/payload_log.py)",
            seen=seen,
            interval=0.5,
        )

    def deliver_labels(self, stats: TrafficStats) -> pa.Table | None:
        """The true labels of the requests in `stats`, keyed by the ids the client sent, into
        the monitor's labels location (a delivery of delayed ground truth); returns the
        labelled rows (features, `request_id`, `row`, `label`), None when nothing is labelled."""
        if self.labels_uri is None or self.data.label is None:
            return None
        labelled = labelled_requests([stats], self.data.label)
        target = write_labels(labelled, self.labels_uri, stats.phase)
        self.step(f"labels of the {stats.phase} requests delivered: {target}")
        return labelled

    # -- the whole loop --------------------------------------------------------------------

    async def run(self) -> DemoResult:
        self.prepare_data()
        baseline, shifted, loop_rows = (
            self.data.traffic(p) for p in ("baseline", "shifted", "rollout")
        )
        async with LocalStack(
            self.state_dir,
            resync_seconds=2.0,
            operator_env={"KUBELOOP_RESYNC_SECONDS": "2"},
            workload_env=self.workload_env,
        ) as stack:
            self.stack = stack
            await self.observer.attach(self.api)
            stop_tracking = asyncio.Event()
            tracker = asyncio.create_task(self.track_deployment(stop_tracking))
            try:
                await self._loop(baseline, shifted, loop_rows)
            finally:
                stop_tracking.set()
                await tracker
                self.result.pipeline = await self.get(TP)
                self.result.deployment = await self.get(MD)
                self.result.canary_messages = await self.canary_events()
                await self.observer.detach()
        self.result.seconds = time.monotonic() - self.t0
        return self.result

    async def _loop(self, baseline: pa.Table, shifted: pa.Table, loop_rows: pa.Table) -> None:
        for line in await apply_objects(self.api, self.docs):
            self.step(f"applied {line}")
        await self.wait_champion("1", runs=1, timeout=STEP_TIMEOUT)
        self.step("v1 trained and promoted (champion 1)")
        traffic = await self.wait_serving("1", timeout=STEP_TIMEOUT)
        self.step(f"v1 serving at {traffic.url}")

        stats = await traffic.send(baseline, "baseline")
        self.result.traffic.append(stats)
        self.step(_traffic_line(stats))
        self.deliver_labels(stats)
        await self.wait_logged(timeout=60)
        check = await self.check_drift(timeout=STEP_TIMEOUT)
        self.step(f"monitor on baseline traffic: {check.verdict}")
        if check.verdict != "NoDrift":
            raise DemoError(f"baseline traffic was judged {check.verdict}: {check.features}")

        # New labelled data arrives with the shift: the retrain reads it from the same URI.
        data = self.state_dir / "data" / self.data.name
        shutil.copyfile(data / "fresh" / "part-0.parquet", data / "train" / "part-0.parquet")
        self.step("fresh labelled data (shifted population) written to the training URI")
        stats = await traffic.send(shifted, "shifted")
        self.result.traffic.append(stats)
        self.step(_traffic_line(stats))
        self.deliver_labels(stats)
        await self.wait_logged(timeout=60)

        check = await self.check_drift(timeout=STEP_TIMEOUT)
        self.step(f"monitor on shifted traffic: {check.verdict}")
        if check.verdict != "Drift":
            raise DemoError(f"shifted traffic was judged {check.verdict}: {check.features}")

        self.step(f"retrain requested by the monitor at {check.retrain_requested_at}")
        # From the retrain request until v2 serves everything, a steady load runs.
        stop = asyncio.Event()
        size = traffic.rows_per_request
        rollout = asyncio.create_task(
            traffic.loop(
                lambda i: loop_rows.slice((i * size) % (loop_rows.num_rows - size), size),
                stop,
                "rollout",
                concurrency=1,
                pause=0.2,
            )
        )
        try:
            status = await self.wait_champion("2", runs=2, timeout=STEP_TIMEOUT)
            # The gate's sentence: v2 and v1 scored on the same (v2's) validation rows.
            verdict = (status.get("runs") or [{}])[0].get("message")
            self.step(f"v2 retrained on fresh data, passed the gate: {verdict} (champion 2)")
            await self.wait_serving("2", timeout=STEP_TIMEOUT)
            self.step("v2 serving on every replica; the canary is finished")
            # Keep the load a moment longer: old pods drain and stop under it.
            await asyncio.sleep(3)
        finally:
            stop.set()
            stats = await rollout
            self.result.traffic.append(stats)
        self.step(_traffic_line(stats))
        await self.wait_logged(timeout=60)
        self.step(f"payload log: {self.result.logged_rows} rows")
        self.result.get_output = await self.kubectl_get()

    async def canary_events(self) -> list[str]:
        """The rollout's Events on the ModelDeployment (the operator posts them from a queue: they
        outlast the conditions a poll may miss), oldest first."""
        reasons = {"CanaryStarted", "CanaryStep", "Promoted", "RolledBack"}
        found = [
            e
            for e in await self.api.list("v1/events", NAMESPACE)
            if e.get("reason") in reasons
            and (e.get("involvedObject") or {}).get("name") == self.name
            and (e.get("involvedObject") or {}).get("kind") == "ModelDeployment"
        ]
        found.sort(key=lambda e: str(e.get("firstTimestamp") or e.get("eventTime") or ""))
        return [f"{e['reason']}: {e.get('message', '')}" for e in found]

    async def kubectl_get(self) -> str:
        """`kubeloop local get tp,md,dm -n ml` in a child process, against the running stack."""
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "kubeloop.cli",
            "local",
            "--state-dir",
            str(self.state_dir),
            "get",
            "tp,md,dm",
            "-n",
            NAMESPACE,
            env=host_env(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await process.communicate()
        if process.returncode != 0:
            raise DemoError(f"kubeloop local get tp,md,dm failed: {out.decode(errors='replace')}")
        return out.decode()


def _traffic_line(stats: TrafficStats) -> str:
    versions = ", ".join(f"v{v}: {n}" for v, n in sorted(stats.by_version.items()))
    line = f"{stats.phase} traffic: {stats.requests} requests ({versions}), {stats.failed} failed"
    return line + (f"; first error: {stats.errors[0]}" if stats.errors else "")


async def _describe(scenario: Scenario, resource: str) -> str:
    return str(await scenario.get(resource))


async def run_scenario(
    state_dir: Path,
    observer: Observer | None = None,
    example: Path = EXAMPLE,
    data: DemoData = CHURN,
    workload_env: Mapping[str, str] | None = None,
) -> DemoResult:
    """Run the whole loop under `state_dir` (created; earlier demo output there is replaced).

    `example` holds the three resources (one name, namespace `ml`) over the `data` the
    scenario writes: examples/local/churn.yaml (the built-in trainer) on churn by default; the
    bring-your-own examples (examples/byo/*/local.yaml) run a team's own training code.
    `workload_env`: set in every pod, as an image's ENV would be.
    """
    state_dir = state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    scenario = Scenario(state_dir, observer or _Silent(), example, data, workload_env)
    return await scenario.run()
