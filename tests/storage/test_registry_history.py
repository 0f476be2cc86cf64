"""The registry as the source of truth, on file:// and on moto's S3 server: every promotion of
an alias is an immutable history entry, the pointer follows the newest one, and the run
numbering a re-created pipeline continues from is found in storage."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from tests.storage.conftest import local_version

from kubeloop.registry import Registry, RegistryError
from kubeloop.storage import join, store_for


def _publish(registry: Registry, tmp_path: Path, count: int, **manifest: Any) -> list[int]:
    out = []
    for _ in range(count):
        claim = registry.allocate(f"r{len(registry.versions()) + 1}")
        registry.publish(local_version(tmp_path, str(claim.version), **manifest), claim)
        out.append(claim.version)
    return out


def _history_files(artifacts: str, alias: str) -> dict[str, bytes]:
    store = store_for(artifacts)
    prefix = join(artifacts, "aliases", "history", alias) + "/"
    return {obj.uri[len(prefix) :]: store.read_bytes(obj.uri) for obj in store.list(prefix)}


def test_each_promotion_is_a_history_entry_and_the_pointer_follows(
    artifacts: str, tmp_path: Path
) -> None:
    registry = Registry(artifacts)
    _publish(registry, tmp_path, 3)
    registry.set_alias("champion", 1, by="operator", reason="gate passed", run_id="1")
    registry.set_alias("champion", 3, by="operator", reason="beat the champion", run_id="3")
    registry.set_alias("production", 1, by="kubectl-annotate", reason="approved")
    registry.set_alias("champion", 2, by="kubectl-annotate", reason="rollback")

    files = _history_files(artifacts, "champion")
    assert sorted(files) == ["00000001.json", "00000002.json", "00000003.json"]
    assert [json.loads(files[name])["version"] for name in sorted(files)] == ["1", "3", "2"]
    champion = registry.history("champion")
    assert [(e["version"], e["previous"], e["sequence"]) for e in champion] == [
        ("1", None, 1),
        ("3", "1", 2),
        ("2", "3", 3),
    ]
    assert [(e["by"], e["reason"], e["runId"]) for e in champion] == [
        ("operator", "gate passed", "1"),
        ("operator", "beat the champion", "3"),
        ("kubectl-annotate", "rollback", None),
    ]
    # All aliases together, in the order the promotions happened.
    assert [(e["alias"], e["version"]) for e in registry.history()] == [
        ("champion", "1"),
        ("champion", "3"),
        ("production", "1"),
        ("champion", "2"),
    ]
    pointers = registry.aliases()
    assert sorted(pointers) == ["champion", "production"]
    assert pointers["champion"] == {
        "version": "2",
        "uri": registry.version_uri(2),
        "by": "kubectl-annotate",
        "reason": "rollback",
        "promotedAt": champion[-1]["promotedAt"],
    }
    assert registry.resolve("production") == registry.version_uri(1)
    assert registry.resolve("champion") == registry.version_uri(2)


def test_a_writer_with_a_stale_listing_never_overwrites_an_entry(
    artifacts: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = Registry(artifacts)
    _publish(registry, tmp_path, 2)
    registry.set_alias("champion", 1, by="a", reason="first")
    before = _history_files(artifacts, "champion")
    # This writer lists once and sees no history (as if another promoter wrote in between):
    # it tries sequence 1, which exists, and must move on to 2 instead of replacing it.
    stale = Registry(artifacts)
    real = stale._history_keys
    listed: list[str] = []

    def first_listing_empty(alias: str) -> dict[int, str]:
        listed.append(alias)
        return {} if len(listed) == 1 else real(alias)

    monkeypatch.setattr(stale, "_history_keys", first_listing_empty)
    stale.set_alias("champion", 2, by="b", reason="second")

    after = _history_files(artifacts, "champion")
    assert after["00000001.json"] == before["00000001.json"]
    assert sorted(after) == ["00000001.json", "00000002.json"]
    assert json.loads(after["00000002.json"])["previous"] == "1"
    pointer = registry.get_alias("champion")
    assert pointer is not None and pointer["version"] == "2"


def test_promoters_racing_are_all_recorded_and_the_pointer_ends_on_the_newest(
    artifacts: str, tmp_path: Path
) -> None:
    registry = Registry(artifacts)
    versions = _publish(registry, tmp_path, 3)
    start = threading.Barrier(6)

    def promote(i: int) -> None:
        start.wait(30)
        version = versions[i % len(versions)]
        Registry(artifacts).set_alias("champion", version, by=f"p{i}", reason="race")

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(promote, range(6)))

    history = registry.history("champion")
    assert sorted(e["by"] for e in history) == [f"p{i}" for i in range(6)]
    assert [e["sequence"] for e in history] == list(range(1, 7))
    # One chain: each entry replaced the version of the entry before it.
    assert [e["previous"] for e in history] == [None] + [e["version"] for e in history[:-1]]
    pointer = registry.get_alias("champion")
    assert pointer is not None
    assert (pointer["version"], pointer["by"]) == (history[-1]["version"], history[-1]["by"])


def test_the_first_entry_replaces_a_pointer_written_before_histories(
    artifacts: str, tmp_path: Path
) -> None:
    registry = Registry(artifacts)
    _publish(registry, tmp_path, 2)
    old = {"version": "1", "uri": registry.version_uri(1)}
    store_for(artifacts).write_bytes(
        join(artifacts, "aliases", "champion.json"), json.dumps(old).encode()
    )
    registry.set_alias("champion", 2, by="operator", reason="gate passed")
    assert [(e["version"], e["previous"]) for e in registry.history("champion")] == [("2", "1")]


def test_bad_alias_names_and_missing_versions_are_refused(artifacts: str, tmp_path: Path) -> None:
    registry = Registry(artifacts)
    _publish(registry, tmp_path, 1)
    for bad in ("latest", "7", "Prod", "../x"):
        with pytest.raises(RegistryError, match="must be lowercase"):
            registry.set_alias(bad, 1, by="t", reason="t")
    with pytest.raises(RegistryError, match="must be lowercase"):
        registry.history("../x")
    with pytest.raises(RegistryError, match=r"version 4 .* is not complete"):
        registry.set_alias("champion", 4, by="t", reason="t")
    assert registry.history() == [] and registry.aliases() == {}


def test_last_run_id_comes_from_runs_and_manifests(artifacts: str, tmp_path: Path) -> None:
    registry = Registry(artifacts)
    assert registry.last_run_id() == 0
    store = store_for(artifacts)
    store.write_bytes(join(artifacts, "runs", "3", "run.json"), b"{}")
    for epoch in range(3):  # many objects under one run count once
        store.write_bytes(join(artifacts, "runs", "12", "checkpoints", f"epoch-{epoch}.pt"), b"x")
    store.write_bytes(join(artifacts, "runs", "local-20261130T1200-ab12cd", "run.json"), b"{}")
    assert registry.last_run_id() == 12
    # A version whose runs/ prefix is gone (a lifecycle rule) still counts.
    _publish(registry, tmp_path, 1, runId="40")
    assert registry.last_run_id() == 40
