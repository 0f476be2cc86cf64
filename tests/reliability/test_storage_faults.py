"""Object storage under faults: S3 throttling, 5xx, lost answers and timeouts, injected by a
seeded proxy in front of a real S3 server (moto) on loopback.

What must hold (issue 9, Storage): every operation is retried with backoff and succeeds, or
fails with a clear reason in bounded time; a model version is never half-written (complete
with every file verified, or not listed at all); a lost answer never makes a run claim two
versions. `KUBELOOP_SOAK=1` (make reliability) multiplies the counts.
"""

from __future__ import annotations

import io
import os
import threading
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from tests.reliability.faultproxy import FaultPlan, fault_proxy

from kubeloop.modelformat import verify_folder, write_manifest
from kubeloop.registry import CLAIM, Registry
from kubeloop.storage import AlreadyExistsError, S3Store, StorageError, arrow_filesystem, join

SOAK = os.environ.get("KUBELOOP_SOAK") == "1"


def _scale(n: int) -> int:
    return n * 10 if SOAK else n


def _report(name: str, **figures: object) -> None:
    # One greppable line per experiment; RELIABILITY.md quotes them (`pytest -s`).
    print(f"\nRELIABILITY {name}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))


@pytest.fixture
def via_proxy(monkeypatch: pytest.MonkeyPatch, s3_endpoint: str):  # type: ignore[no-untyped-def]
    """Start a fault proxy for a plan and point AWS_ENDPOINT_URL at it; yields a starter."""
    started = []

    def start(plan: FaultPlan, **env: str) -> str:
        cm = fault_proxy(s3_endpoint, plan)
        url = cm.__enter__()
        started.append(cm)
        monkeypatch.setenv("AWS_ENDPOINT_URL", url)
        monkeypatch.setenv("AWS_RETRY_MODE", "standard")
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        return url

    yield start
    for cm in started:
        cm.__exit__(None, None, None)


def _version_folder(tmp_path: Path, tag: str) -> Path:
    folder = tmp_path / tag
    folder.mkdir()
    (folder / "model.bin").write_bytes(os.urandom(4096))
    (folder / "preprocess.json").write_text(f'{{"tag": "{tag}"}}')
    (folder / "profile").mkdir()
    (folder / "profile" / "reference.json").write_text("{}")
    write_manifest(folder, {"tag": tag})
    return folder


def test_store_operations_converge_under_injected_faults(via_proxy, bucket: str) -> None:
    plan = FaultPlan({"ok": 0.7, "throttle": 0.1, "error": 0.1, "lost": 0.1}, seed=7)
    via_proxy(plan, AWS_MAX_ATTEMPTS="10")
    store = S3Store()
    ops = _scale(25)
    payloads = {join(bucket, f"obj/{i}"): os.urandom(512 + i) for i in range(ops)}
    for uri, data in payloads.items():
        store.write_bytes(uri, data)
    for uri, data in payloads.items():
        assert store.read_bytes(uri) == data
    listed = {o.uri for o in store.list(join(bucket, "obj") + "/")}
    assert listed == set(payloads)
    _report(
        "storage-ops",
        operations=2 * ops + 1,
        requests=sum(plan.counts.values()),
        faults=plan.faults,
        failed=0,
    )
    assert plan.faults > 0, "the plan injected nothing: the test proved nothing"


def test_exclusive_creates_survive_lost_answers(via_proxy, bucket: str, s3_endpoint: str) -> None:
    # A create-if-absent whose answer is lost is retried and meets its own object (412): that
    # is success, not "already exists" (payload-log files, claims and manifests rely on it).
    # One client making many calls under sustained connection errors may exhaust botocore's
    # retry quota (by design: the SDK stops retrying a failing endpoint); such a call must
    # fail as a storage error, never as a false "already exists".
    plan = FaultPlan({"ok": 0.7, "lost": 0.3}, seed=3)
    via_proxy(plan, AWS_MAX_ATTEMPTS="10")
    store = S3Store()
    creates, failed, written = _scale(20), 0, []
    for i in range(creates):
        uri = join(bucket, f"excl/{i}")
        try:
            store.write_bytes(uri, f"payload {i}".encode(), if_absent=True)
        except AlreadyExistsError:
            raise
        except StorageError:
            failed += 1
            continue
        written.append(i)
    os.environ["AWS_ENDPOINT_URL"] = s3_endpoint  # check past the proxy
    direct = S3Store()
    for i in written:
        assert direct.read_bytes(join(bucket, f"excl/{i}")) == f"payload {i}".encode()
    assert plan.counts["lost"] > 0
    _report("exclusive-create", creates=creates, lost_answers=plan.counts["lost"], failed=failed)
    assert failed <= creates // 4
    with pytest.raises(AlreadyExistsError):  # a real conflict is still one
        direct.write_bytes(join(bucket, "excl/x"), b"mine")
        direct.write_bytes(join(bucket, "excl/x"), b"someone else", if_absent=True)


def test_concurrent_publishes_under_faults_are_complete_or_absent(
    via_proxy, bucket: str, s3_endpoint: str, tmp_path: Path
) -> None:
    artifacts = join(bucket, "models/churn")
    plan = FaultPlan({"ok": 0.75, "throttle": 0.08, "error": 0.07, "lost": 0.1}, seed=11)
    via_proxy(plan, AWS_MAX_ATTEMPTS="10")
    runs = [f"run-{i}" for i in range(_scale(6))]
    claims: dict[str, int] = {}
    errors: dict[str, str] = {}

    def train(run_id: str) -> None:
        try:
            registry = Registry(artifacts)
            claim = registry.allocate(run_id)
            registry.publish(_version_folder(tmp_path, run_id), claim)
            claims[run_id] = claim.version
        except StorageError as exc:  # allowed, if clear; checked below
            errors[run_id] = str(exc)

    threads = [threading.Thread(target=train, args=(r,)) for r in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a publish hung"

    # Look at the result directly on the store, past the proxy.
    os.environ["AWS_ENDPOINT_URL"] = s3_endpoint
    direct = Registry(artifacts)
    complete = direct.versions()
    assert sorted(claims.values()) == complete, (claims, complete, errors)
    assert len(set(claims.values())) == len(claims), "two runs got the same version"
    for version in complete:
        folder = tmp_path / "download" / str(version)
        prefix = direct.version_uri(version) + "/"
        for obj in direct.store.list(prefix):
            rel = obj.uri[len(prefix) :]
            target = folder / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(direct.store.read_bytes(obj.uri))
        verify_folder(folder)  # every file present, every sha256 equal
    # A lost answer on the exclusive create must not leave a second claim for the same run.
    owners: list[str] = []
    for obj in direct.store.list(join(artifacts, "versions") + "/"):
        if obj.uri.endswith("/" + CLAIM):
            owners.append(direct._claim_owner(int(obj.uri.split("/")[-2])) or "?")
    assert len(owners) == len(set(owners)), f"a run holds two claims: {sorted(owners)}"
    for message in errors.values():
        assert "s3://" in message and "attempt" in message
    _report(
        "registry-publish",
        runs=len(runs),
        published=len(claims),
        failed_cleanly=len(errors),
        requests=sum(plan.counts.values()),
        faults=plan.faults,
        lost_answers=plan.counts["lost"],
        half_written=0,
        double_claims=0,
    )
    assert plan.counts["lost"] > 0


def test_republishing_the_same_version_is_idempotent(bucket: str, tmp_path: Path) -> None:
    # What a retried pod (or a manifest create whose answer was lost) does.
    registry = Registry(join(bucket, "models/idem"))
    claim = registry.allocate("run-a")
    folder = _version_folder(tmp_path, "a")
    registry.publish(folder, claim)
    assert registry.allocate("run-a").complete
    registry.publish(folder, registry.allocate("run-a"))
    assert registry.versions() == [claim.version]


def test_persistent_throttling_fails_clearly_in_bounded_time(
    via_proxy, bucket: str, tmp_path: Path
) -> None:
    artifacts = join(bucket, "models/throttled")
    plan = FaultPlan({"throttle": 1.0}, seed=1)
    via_proxy(plan, AWS_MAX_ATTEMPTS="3")
    started = time.monotonic()
    with pytest.raises(StorageError) as info:
        Registry(artifacts).allocate("run-x")
    elapsed = time.monotonic() - started
    message = str(info.value)
    assert artifacts in message and "SlowDown" in message and "3 attempt" in message, message
    assert elapsed < 30
    assert plan.counts["throttle"] == 3  # exactly the configured attempts, no hot loop
    _report("storage-throttled", attempts=3, seconds=round(elapsed, 1), message=repr(message))


def test_a_stalled_store_times_out_with_a_clear_reason(via_proxy, bucket: str) -> None:
    plan = FaultPlan({"slow": 1.0}, seed=2, delay=3.0)
    via_proxy(plan, AWS_MAX_ATTEMPTS="2", KUBELOOP_S3_TIMEOUT_SECONDS="0.5")
    started = time.monotonic()
    with pytest.raises(StorageError) as info:
        S3Store().read_bytes(join(bucket, f"missing-{uuid.uuid4().hex}"))
    elapsed = time.monotonic() - started
    assert "timed out" in str(info.value) and "KUBELOOP_S3_TIMEOUT_SECONDS" in str(info.value)
    assert elapsed < 15
    _report("storage-timeout", attempts=plan.counts["slow"], seconds=round(elapsed, 1))


def test_parquet_dataset_reads_through_throttling(via_proxy, bucket: str, s3_endpoint: str) -> None:
    # The trainer's and the monitor's read path (pyarrow's own S3 client and retry strategy).
    store = S3Store()
    tables = []
    for part in range(4):
        table = pa.table({"x": list(range(part * 100, part * 100 + 100)), "p": [part] * 100})
        sink = io.BytesIO()
        pq.write_table(table, sink)
        store.write_bytes(join(bucket, f"data/part-{part}.parquet"), sink.getvalue())
        tables.append(table)
    plan = FaultPlan({"ok": 0.8, "throttle": 0.1, "error": 0.1}, seed=5)
    via_proxy(plan, AWS_MAX_ATTEMPTS="10")
    filesystem, path = arrow_filesystem(join(bucket, "data"))
    read = ds.dataset(path, filesystem=filesystem, format="parquet").to_table()
    assert sorted(read.column("x").to_pylist()) == list(range(400))
    _report("parquet-read", requests=sum(plan.counts.values()), faults=plan.faults, failed=0)
    assert plan.faults > 0
