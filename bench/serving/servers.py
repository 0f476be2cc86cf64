"""Start, probe and stop the servers of the serving benchmark, each in its own processes.

Kubeloop runs as `python -m kubeloop.cli serve` (what the pods run); MLServer 1.7 runs as
`mlserver start` from its own venv (.venv-bench-mlserver, `make bench-venvs`), with its sklearn
or xgboost runtime on the same model file; KServe's Python ModelServer runs
bench/serving/kserve_server.py from .venv-bench-kserve. All listen on loopback only.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "KSERVE_PYTHON",
    "MLSERVER",
    "Running",
    "kserve_available",
    "mlserver_available",
    "process_tree",
    "start_kserve",
    "start_kubeloop",
    "start_mlserver",
]

ROOT = Path(__file__).resolve().parents[2]
MLSERVER = ROOT / ".venv-bench-mlserver" / "bin" / "mlserver"
KSERVE_PYTHON = ROOT / ".venv-bench-kserve" / "bin" / "python"
KSERVE_SCRIPT = Path(__file__).resolve().parent / "kserve_server.py"
SINGLE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@dataclass
class Running:
    """One server under test: its process group, port and infer path."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    infer_path: str
    log_path: Path
    grpc_port: int = 0  # its V2 gRPC endpoint (0: none)

    def rss_mib(self) -> float:
        """Resident memory of the server and all its child processes (workers, pools)."""
        return sum(_rss_kib(pid) for pid in process_tree(self.process.pid)) / 1024

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the server and its child processes have used so far."""
        return sum(_cpu_seconds(pid) for pid in process_tree(self.process.pid))

    def stop(self) -> int:
        """SIGTERM the process group, SIGKILL after 20 s."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                return self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
        return self.process.wait()


def mlserver_available() -> bool:
    """MLServer's venv is there (`make bench-venvs`)."""
    return MLSERVER.is_file()


def kserve_available() -> bool:
    """KServe's venv is there (`make bench-venvs`)."""
    return KSERVE_PYTHON.is_file()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _start(
    name: str,
    argv: list[str],
    env: dict[str, str],
    *,
    port: int,
    ready: str,
    infer: str,
    logs: Path,
    grpc_port: int = 0,
) -> Running:
    log_path = logs / f"{name.replace(' ', '_').replace('/', '-')}.log"
    with log_path.open("wb") as handle:
        process = subprocess.Popen(
            argv,
            env={**os.environ, **env},
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() reaches every worker
        )
    running = Running(name, process, port, infer, log_path, grpc_port)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{ready}", timeout=2) as resp:
                if resp.status == 200:
                    return running
        except (OSError, urllib.error.HTTPError):
            pass
        time.sleep(0.2)
    running.stop()
    raise RuntimeError(f"{name} not ready in 120 s:\n{log_path.read_text()}")


def start_kubeloop(
    name: str,
    version: Path,
    logs: Path,
    *,
    model_name: str,
    workers: int,
    max_batch_size: int,
    max_latency_ms: float,
    payload_log: Path | None = None,
    auth_token: str = "",
) -> Running:
    """`kubeloop serve` on a free loopback port, configured by env as the Deployment does
    (`auth_token`: KUBELOOP_AUTH_TOKEN, as spec.auth's secretKeyRef gives it)."""
    port, grpc_port = _free_port(), _free_port()
    env = {
        "KUBELOOP_MODEL_URI": version.as_uri(),
        "KUBELOOP_MODEL_NAME": model_name,
        "KUBELOOP_HOST": "127.0.0.1",
        "KUBELOOP_PORT": str(port),
        "KUBELOOP_GRPC_PORT": str(grpc_port),
        "KUBELOOP_WORKERS": str(workers),
        "KUBELOOP_MAX_BATCH_SIZE": str(max_batch_size),
        "KUBELOOP_MAX_LATENCY_MS": f"{max_latency_ms:g}",
        "KUBELOOP_PAYLOAD_LOG_URI": payload_log.as_uri() if payload_log else "",
        "KUBELOOP_WORK_DIR": str(logs),
        "KUBELOOP_AUTH_TOKEN": auth_token,
        "PYTHONPATH": str(ROOT / "operator"),
    }
    argv = [sys.executable, "-m", "kubeloop.cli", "serve"]
    ready, infer = "/v2/health/ready", f"/v2/models/{model_name}/infer"
    return _start(
        name, argv, env, port=port, ready=ready, infer=infer, logs=logs, grpc_port=grpc_port
    )


def start_mlserver(
    name: str,
    model_dir: Path,
    logs: Path,
    *,
    implementation: str,
    model_file: str,
    parallel_workers: int,
    max_batch_size: int,
    max_batch_time_ms: float,
) -> Running:
    """`mlserver start` with one runtime (`implementation`, e.g. mlserver_sklearn.SKLearnModel)
    on `model_file`; adaptive batching off when max_batch_size is 0."""
    port, grpc, metrics = _free_port(), _free_port(), _free_port()
    repo = model_dir.parent
    settings = {
        "debug": False,  # no access log: its fastest setting
        "host": "127.0.0.1",
        "http_port": port,
        "grpc_port": grpc,
        "metrics_port": metrics,
        "parallel_workers": parallel_workers,
        "metrics_dir": str(logs / "mlserver-metrics"),
    }
    model = {
        "name": model_dir.name,
        "implementation": implementation,
        "parameters": {"uri": f"./{model_file}", "version": "1"},
        "max_batch_size": max_batch_size,
        "max_batch_time": max_batch_time_ms / 1000,
    }
    (repo / "settings.json").write_text(json.dumps(settings, indent=2))
    (model_dir / "model-settings.json").write_text(json.dumps(model, indent=2))
    argv = [str(MLSERVER), "start", str(repo)]
    ready = f"/v2/models/{model_dir.name}/ready"
    infer = f"/v2/models/{model_dir.name}/infer"
    # One OpenMP/BLAS thread, as `kubeloop serve` sets for itself: with sklearn's default (one
    # per core) a single-row HistGradientBoosting predict spins across cores and was ~40x
    # slower on the shared 2-core machine, so this is MLServer's faster setting.
    return _start(
        name, argv, dict(SINGLE_THREAD), port=port, ready=ready, infer=infer, logs=logs,
        grpc_port=grpc,
    )  # fmt: skip


def start_kserve(name: str, model_dir: Path, logs: Path) -> Running:
    """KServe's ModelServer (one process) serving model_dir's TorchScript file as its name."""
    port = _free_port()
    argv = [str(KSERVE_PYTHON), str(KSERVE_SCRIPT), str(model_dir), model_dir.name, str(port)]
    ready = f"/v2/models/{model_dir.name}/ready"
    infer = f"/v2/models/{model_dir.name}/infer"
    # One torch thread, as `kubeloop serve` runs its model (the script also sets it).
    return _start(name, argv, dict(SINGLE_THREAD), port=port, ready=ready, infer=infer, logs=logs)


def process_tree(root: int) -> list[int]:
    """A process and all its descendants (pids), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # utime and stime: fields 14 and 15 of /proc/<pid>/stat, counted after the ")".
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0
