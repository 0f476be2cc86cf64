"""A real Pushgateway for a test (Debian's prometheus-pushgateway), its own and no one else's.

Debian's build persists to /var/lib/prometheus/pushgateway.data by default and loads that file
at start: every test Pushgateway would see the groups the previous one (or a parallel worker's)
left. Each one here persists to a file of its own, and is known by it: the URL returned is the
process started here (its /api/v1/status names that file), never another one that took the
port between choosing it and binding it.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

__all__ = ["PUSHGATEWAY", "start_pushgateway"]

PUSHGATEWAY = shutil.which("prometheus-pushgateway") or shutil.which("pushgateway")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _is_mine(url: str, persistence: Path) -> bool:
    try:
        status = json.loads(urllib.request.urlopen(f"{url}/api/v1/status", timeout=1).read())
    except OSError:
        return False
    return bool(status["data"]["flags"].get("persistence.file") == str(persistence))


def start_pushgateway(work: Path, attempts: int = 5) -> tuple[str, subprocess.Popen[bytes]]:
    """Start one in `work`; (its URL, its process). The caller terminates the process."""
    assert PUSHGATEWAY is not None, "needs the Debian package prometheus-pushgateway"
    persistence = work / "pushgateway.data"
    for _ in range(attempts):
        url = f"http://127.0.0.1:{_free_port()}"
        process = subprocess.Popen(
            [PUSHGATEWAY, f"--web.listen-address={url.removeprefix('http://')}",
             f"--persistence.file={persistence}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while process.poll() is None and time.monotonic() < deadline:
            if _is_mine(url, persistence):
                return url, process
            time.sleep(0.2)
        process.kill()
        process.wait()  # the port was taken (it exited) or it never answered: another port
    raise RuntimeError(f"no Pushgateway of ours answered after {attempts} attempts")
