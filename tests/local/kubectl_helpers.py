"""Running the real kubectl against an emulated API (`kubeloop local`'s) from tests."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from kubeloop.local.cluster.emulator import EmulatorThread
from kubeloop.local.cluster.stack import write_kubeconfig

__all__ = ["KUBECTL", "ROOT", "env", "kubectl", "running_cluster", "wait_for"]

ROOT = Path(__file__).resolve().parents[2]
KUBECTL = ROOT / ".tools/bin/kubectl"


@contextmanager
def running_cluster(home: Path) -> Iterator[EmulatorThread]:
    """An emulator with namespace `ml` and examples/local/churn.yaml, kubeconfig in `home`."""
    with EmulatorThread() as c:
        write_kubeconfig(home / "kubeconfig", c.url)
        c.call(
            c.emulator.create_object(
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ml"}}
            )
        )
        for doc in yaml.safe_load_all((ROOT / "examples/local/churn.yaml").read_text()):
            c.call(c.emulator.create_object(doc))
        yield c


def env(home: Path) -> dict[str, str]:
    return {**os.environ, "KUBECONFIG": str(home / "kubeconfig"), "KUBECACHEDIR": str(home)}


def kubectl(home: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(KUBECTL), *args],
        check=False,
        env=env(home),
        capture_output=True,
        text=True,
        timeout=60,
    )
    if ok:
        assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
    return done


def wait_for(condition: Callable[[], bool], timeout: float = 30) -> bool:
    """Poll `condition` until it holds (True) or `timeout` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
