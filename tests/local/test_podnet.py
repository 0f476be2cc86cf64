"""Pod addresses (kubeloop.local.cluster.podnet): two clusters on one machine do not share them."""

from __future__ import annotations

import pytest

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


def test_networks_of_parallel_clusters_start_in_different_blocks() -> None:
    # Two test workers each run a cluster: with one fixed start both handed 127.1.0.2 to their
    # first pod, and the second pod's forward of 127.1.0.2:8080 failed to bind.
    firsts = {PodNetwork().allocate() for _ in range(20)}
    if firsts == {"127.0.0.1"}:
        pytest.skip("this system binds only 127.0.0.1: every pod gets 127.0.0.1")
    assert len(firsts) > 1
