"""Pod addresses (kubeloop.local.cluster.podnet): two clusters on one machine do not share them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import kubeloop
from kubeloop.local.cluster.podnet import PodNetwork


def _first_addresses(network: PodNetwork, n: int) -> list[str]:
    return [network.allocate() for _ in range(n)]


def test_a_network_hands_out_addresses_of_its_own_block_skipping_0_and_255() -> None:
    network = PodNetwork(block=3)
    if not network.enabled:
        pytest.skip("this system binds only 127.0.0.1: every pod gets 127.0.0.1")
    addresses = _first_addresses(network, 300)
    assert addresses[:2] == ["127.3.0.1", "127.3.0.2"]
    assert len(set(addresses)) == 300
    assert not any(a.endswith((".0", ".255")) for a in addresses)


def _enabled() -> None:
    if not PodNetwork(block=1).enabled:
        pytest.skip("this system binds only 127.0.0.1: every pod gets 127.0.0.1")


def test_clusters_claim_blocks_of_their_own_and_give_them_back(tmp_path: Path) -> None:
    # Parallel test workers once drew their block at random: two drew 127.147, and one's pod
    # could not listen on 127.147.0.4:8080 (CI of dcecff8). A claim makes the clash impossible.
    _enabled()
    first = PodNetwork(claims=tmp_path, start=254)
    second = PodNetwork(claims=tmp_path, start=254)
    assert (first.block, second.block) == (254, 1)  # taken -> the next one, wrapping at 254
    assert first.allocate() == "127.254.0.1"
    assert second.allocate() == "127.1.0.1"
    first.close()
    third = PodNetwork(claims=tmp_path, start=254)
    assert third.block == 254
    second.close()
    third.close()


def test_a_block_claimed_by_another_process_is_not_taken(tmp_path: Path) -> None:
    _enabled()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path;"
            "from kubeloop.local.cluster.podnet import PodNetwork;"
            f"n = PodNetwork(claims=Path({str(tmp_path)!r}), start=7);"
            "print(n.block, flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(kubeloop.__file__).parents[1])},
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "7"
        mine = PodNetwork(claims=tmp_path, start=7)
        assert mine.block == 8
        mine.close()
    finally:
        holder.communicate("", timeout=30)  # its end drops its claim
    assert holder.returncode == 0
    after = PodNetwork(claims=tmp_path, start=7)
    assert after.block == 7
    after.close()


def test_addresses_wrap_inside_the_block() -> None:
    network = PodNetwork(block=9)
    if not network.enabled:
        pytest.skip("this system binds only 127.0.0.1: every pod gets 127.0.0.1")
    addresses = _first_addresses(network, 256 * 254 + 1)
    assert addresses[-2:] == ["127.9.255.254", "127.9.0.1"]
    assert all(a.startswith("127.9.") for a in addresses)
