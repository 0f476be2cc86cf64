"""kubeloop.registry on file:// and on moto's S3 server: allocation races, publish, aliases."""

from __future__ import annotations

import json
import multiprocessing
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from tests.storage.conftest import local_version

from kubeloop.registry import Registry, RegistryError, VersionClaim
from kubeloop.storage import AlreadyExistsError, join, store_for


def test_threads_racing_get_distinct_versions_and_nothing_is_overwritten(
    artifacts: str, tmp_path: Path
) -> None:
    registry = Registry(artifacts)

    def run(i: int) -> int:
        claim = Registry(artifacts).allocate(f"run-{i}")
        Registry(artifacts).publish(local_version(tmp_path, str(i)), claim)
        return claim.version

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(run, range(8)))
    assert sorted(got) == list(range(1, 9))
    for i, version in enumerate(got):
        # each version holds the files of the run that claimed it, and only those
        assert registry.read_manifest(version)["tag"] == str(i)
        data = store_for(artifacts).read_bytes(join(registry.version_uri(version), "model.bin"))
        assert data == str(i).encode()
    assert registry.versions() == list(range(1, 9))


def _claim_in_process(artifacts: str, run_id: str, queue: multiprocessing.Queue[int]) -> None:
    queue.put(Registry(artifacts).allocate(run_id).version)


def test_processes_racing_get_distinct_versions(tmp_path: Path) -> None:
    artifacts = f"file://{tmp_path}/models"
    ctx = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[int] = ctx.Queue()
    procs = [
        ctx.Process(target=_claim_in_process, args=(artifacts, f"p{i}", queue)) for i in range(6)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(30)
    assert sorted(queue.get(timeout=5) for _ in procs) == list(range(1, 7))


def test_manifest_is_never_overwritten(artifacts: str, tmp_path: Path) -> None:
    registry = Registry(artifacts)
    claim = registry.allocate("a")
    registry.publish(local_version(tmp_path, "first"), claim)
    with pytest.raises(AlreadyExistsError):
        registry.publish(local_version(tmp_path, "second"), claim)
    assert registry.read_manifest(claim.version)["tag"] == "first"


def test_incomplete_versions_are_not_listed_and_numbers_are_not_reused(
    artifacts: str, tmp_path: Path
) -> None:
    registry = Registry(artifacts)
    first = registry.allocate("crashed-before-publish")
    second = registry.allocate("b")
    assert (first.version, second.version) == (1, 2)
    registry.publish(local_version(tmp_path, "b"), second)
    assert registry.versions() == [2]
    assert registry.latest() == 2


def test_a_restarted_run_gets_its_own_claim_back(artifacts: str, tmp_path: Path) -> None:
    registry = Registry(artifacts)
    claim = registry.allocate("run-7")
    registry.allocate("run-8")
    again = registry.allocate("run-7")
    assert again.version == claim.version and not again.complete
    registry.publish(local_version(tmp_path, "7"), claim)
    assert registry.allocate("run-7").complete


def test_a_claim_goes_back_only_to_the_same_run_of_the_same_pipeline_object(
    artifacts: str, tmp_path: Path
) -> None:
    """Run ids restart at 1 when a pipeline is re-created: the new object's run 1 must not get
    the old object's version 1 (published or not); version numbers are never reused."""
    registry = Registry(artifacts)
    old = registry.allocate("1", "uid-old")
    registry.publish(local_version(tmp_path, "old"), old)
    new = registry.allocate("1", "uid-new")
    assert (old.version, new.version, new.complete) == (1, 2, False)
    assert registry.allocate("1", "uid-old") == VersionClaim(1, old.uri, complete=True)
    assert registry.allocate("1", "uid-new") == VersionClaim(2, new.uri, complete=False)
    assert registry.allocate("1").version == 3  # no uid (a laptop run) is yet another owner


def test_aliases_and_resolve(artifacts: str, tmp_path: Path) -> None:
    registry = Registry(artifacts)
    for tag in ("1", "2"):
        registry.publish(local_version(tmp_path, tag), registry.allocate(tag))
    with pytest.raises(RegistryError, match="alias 'champion' is not set"):
        registry.resolve("champion")
    pointer = registry.set_alias("champion", 1, by="test", reason="first", run_id="1")
    assert pointer["uri"] == registry.version_uri(1)
    stored = json.loads(store_for(artifacts).read_bytes(join(artifacts, "aliases/champion.json")))
    assert stored == {
        "version": "1",
        "uri": registry.version_uri(1),
        "by": "test",
        "reason": "first",
        "runId": "1",
        "promotedAt": pointer["promotedAt"],
    }
    assert registry.resolve("champion") == registry.version_uri(1)
    assert registry.resolve("latest") == registry.version_uri(2)
    assert registry.resolve("2") == registry.version_uri(2)
    with pytest.raises(RegistryError, match="version 9"):
        registry.resolve("9")
    with pytest.raises(RegistryError, match="not complete"):
        registry.set_alias("champion", 5, by="test", reason="missing")
    with pytest.raises(RegistryError, match="must be lowercase"):
        registry.set_alias("Latest!", 1, by="test", reason="bad name")
