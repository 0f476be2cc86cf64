"""What the operator runs in each image, run in that image's Python environment.

The dev environment has every extra installed, so a workload that needs a package its image
lacks still passes every other test. Here each image's environment is a venv installed exactly
as its Dockerfile installs it (tests/images/imageenv.py reads the Dockerfiles; `make
image-venvs` builds the venvs, and the fixture below builds any that are missing or stale).
What runs in it is what the operator's pods run: the Job, Deployment and CronJob the real
builders make, turned into a process by the same translation `kubeloop local` uses
(kubeloop.local.cluster.podspec), with the image's `kubeloop` first on PATH and nothing of the dev
environment. One model per framework is trained in the trainer image (file:// storage),
served in the server image with a V2 inference request (payload logging on), and the drift
monitor reads that payload log in the monitor image.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import typing
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kubeloop.api.parse import parse_resource
from kubeloop.api.training import ModelSpec
from kubeloop.local.cluster.podspec import ProcessSpec, build_process, pod_from_template
from kubeloop.local.cluster.processes import free_port
from kubeloop.local.demo.datagen import churn_table
from kubeloop.resources.common import Owner, WorkloadDefaults
from kubeloop.resources.monitoring import build_monitor_cronjob
from kubeloop.resources.serving import build_server_deployment
from kubeloop.resources.training import build_training_job

from .imageenv import IMAGES, ImageEnv, build, image_envs, local_command, pip_commands

# A first run builds the venvs (minutes); slow: `make test` starts it first.
pytestmark = [pytest.mark.timeout(1800), pytest.mark.slow]

ENVS = image_envs()
NAMESPACE = "ml"
# One estimator per framework the API accepts (a new framework must be added here); custom:
# the user's code below, in a "user image" that has xgboost but nothing of Kubeloop.
ESTIMATOR: dict[str, tuple[str | None, dict[str, Any]]] = {
    "sklearn": ("LogisticRegression", {"max_iter": 200}),
    "torch": ("TabularMLP", {"epochs": 2, "hiddenSizes": [16], "batchSize": 64, "patience": 0}),
    "custom": (None, {"trees": 10}),
}
USER_CODE = """
import numpy as np, xgboost, kubeloop_sdk as kl
ctx = kl.context()
cols = ["tenure", "monthly_charges", "total_charges", "support_calls"]
table = kl.read_table("train")
x = np.column_stack([table.column(c).to_numpy(zero_copy_only=False) for c in cols])
model = xgboost.XGBClassifier(n_estimators=ctx.params["trees"], max_depth=3)
model.fit(x, table.column(ctx.target).to_numpy(zero_copy_only=False))
kl.save_model(model, format="xgboost", inputs=cols)
"""
FRAMEWORKS = typing.get_args(ModelSpec.model_fields["framework"].annotation)
ROWS = 200  # per inference request: enough for the monitor's statistics


def test_venvs_follow_the_dockerfiles() -> None:
    """Every image has a venv; images that install the same things share one."""
    assert set(ENVS) == {p.parent.name for p in IMAGES.glob("*/Dockerfile")}
    assert ENVS["trainer-cuda"] is ENVS["trainer"]  # the same packages, but for torch's build
    assert ENVS["server-cuda"] is ENVS["server"]
    assert len(set(ENVS.values())) == 4  # operator, trainer, server, monitor
    extras = {name: next(c for c in env.commands if "-e" in c)[-1] for name, env in ENVS.items()}
    assert extras["server"].endswith("[serve]") and extras["monitor"].endswith("[monitor]")


@pytest.mark.parametrize(
    ("dockerfile", "commands"),
    [
        (
            "FROM a AS build\nRUN pip install --index-url https://download.pytorch.org/whl/cpu "
            '"torch==2.13.0"\nRUN pip install ".[train]" \\\n    && pip uninstall --yes pip\n'
            "FROM b\nRUN pip install nothing-of-the-final-stage\n",
            [
                ["install", "torch==2.13.0"],
                ["install", "-e", "/repo[train]"],
                ["uninstall", "--yes", "pip"],
            ],
        ),
        ("FROM a\nRUN apt-get update && pip install . && rm -rf x\n", [["install", "-e", "/repo"]]),
    ],
)
def test_dockerfile_pip_commands_and_their_local_form(
    dockerfile: str, commands: list[list[str]]
) -> None:
    local = [local_command(c, Path("/repo")) for c in pip_commands(dockerfile)]
    assert local == commands


def test_an_unknown_package_index_is_refused() -> None:
    with pytest.raises(ValueError, match="unexpected package index"):
        local_command(["install", "--index-url", "https://pypi.example.com/simple", "x"])


@pytest.fixture(scope="module")
def venvs() -> dict[str, ImageEnv]:
    for env in dict.fromkeys(ENVS.values()):
        build(env)  # nothing to do when `make image-venvs` built it from the same Dockerfile
    return ENVS


def _owner(kind: str, name: str) -> Owner:
    return Owner("kubeloop.io/v1alpha1", kind, name, NAMESPACE, f"uid-{kind}-{name}")


def _process(
    manifest: dict[str, Any], env: ImageEnv, pod_dir: Path, container_name: str | None = None
) -> ProcessSpec:
    """A container (the only one by default) of the pod of a Job/Deployment/CronJob as a
    process of the image `env` stands for; the containers of one pod share `pod_dir`."""
    spec = manifest["spec"]
    template = (
        spec["jobTemplate"]["spec"]["template"] if "jobTemplate" in spec else spec["template"]
    )
    pod = pod_from_template(
        template, name=f"{manifest['metadata']['name']}-pod", namespace=NAMESPACE, owner=manifest
    )
    if container_name is None:
        (container,) = pod["spec"]["containers"]
    else:
        every = [*pod["spec"].get("initContainers", []), *pod["spec"]["containers"]]
        (container,) = [c for c in every if c["name"] == container_name]
    pod_dir.mkdir(parents=True, exist_ok=True)
    # The image's ENV: its venv first on PATH, HOME on scratch; nothing of this interpreter.
    image_env = {
        "PATH": f"{env.path / 'bin'}:/usr/bin:/bin",
        "HOME": str(pod_dir),
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    init = container not in pod["spec"]["containers"]
    process = build_process(
        pod,
        container,
        secrets={},
        pod_dir=pod_dir,
        free_port=free_port,
        extra_env=image_env,
        init=init,
    )
    if container["command"][0] != "kubeloop":
        return process  # the user's own command (a custom run): the caller says what runs
    # The image's `kubeloop` (build_process runs this interpreter's when none is on PATH).
    verb = len(process.argv) - len(container["command"]) - len(container.get("args") or []) + 1
    process.argv = [str(env.bin("kubeloop")), *process.argv[verb:]]
    return process


def _run(process: ProcessSpec, timeout: float = 600) -> tuple[int, dict[str, Any], str]:
    proc = subprocess.run(
        process.argv,
        env=process.env,
        cwd=process.cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    text = process.termination_path.read_text()
    try:
        result = json.loads(text)
    except ValueError:
        result = {"unparsed": text}
    return proc.returncode, result, proc.stdout + proc.stderr


def _run_custom(job: dict[str, Any], env: ImageEnv, pod_dir: Path) -> tuple[int, Any, str]:
    """The three containers of a custom run's pod: prepare and publish in the trainer image,
    the user's code between them with the trainer image's Python (it has xgboost) but only the
    SDK that prepare staged on its path."""
    code, prepared, log = _run(_process(job, env, pod_dir, "prepare"))
    assert code == 0, f"prepare in the trainer image:\n{prepared}\n{log}"
    user = _process(job, env, pod_dir, "trainer")
    (Path(user.cwd) / "train.py").write_text(USER_CODE)
    user.argv = [str(env.bin("python")), "train.py"]
    code, _, user_log = _run(user)
    assert code == 0, f"the user's code:\n{user_log}"
    return _run(_process(job, env, pod_dir, "publish"))


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("churn")
    pq.write_table(churn_table(600, seed=3), folder / "part-0.parquet")
    return folder


@pytest.fixture(scope="module")
def versions(
    venvs: dict[str, ImageEnv], data: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, dict[str, Any]]:
    """Framework -> the TrainingResult of one run in the trainer image."""
    tmp = tmp_path_factory.mktemp("train")
    out = {}
    for framework in FRAMEWORKS:
        estimator, params = ESTIMATOR[framework]
        name = f"churn-{framework}"
        model: dict[str, Any] = {"framework": framework, "task": "classification"}
        if estimator is not None:
            model["estimator"] = estimator
        doc: dict[str, Any] = {
            "apiVersion": "kubeloop.io/v1alpha1",
            "kind": "TrainingPipeline",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {
                "data": {"train": data.as_uri() + "/", "target": "churned"},
                "model": {**model, "params": params},
                "artifacts": (tmp / "models" / framework).as_uri() + "/",
                "resources": {"cpu": "1", "memory": "2Gi"},
                "seed": 7,
            },
        }
        if framework == "custom":
            doc["spec"]["trainer"] = {"image": "team/churn:1", "command": ["python", "train.py"]}
        job = build_training_job(
            _owner("TrainingPipeline", name),
            parse_resource(doc).spec,
            run_id=1,
            trigger="Create",
            generation=1,
            defaults=WorkloadDefaults(),
        )
        pod_dir = tmp / f"pod-{framework}"
        if framework == "custom":
            code, result, log = _run_custom(job, venvs["trainer"], pod_dir)
        else:
            code, result, log = _run(_process(job, venvs["trainer"], pod_dir))
        assert code == 0 and result.get("ok"), f"{framework} in the trainer image:\n{result}\n{log}"
        out[framework] = result
    return out


def test_the_trainer_image_trains_every_framework(versions: dict[str, dict[str, Any]]) -> None:
    assert set(versions) == set(FRAMEWORKS) == set(ESTIMATOR)
    for framework, result in versions.items():
        manifest = json.loads(
            (Path(result["uri"].removeprefix("file://")) / "manifest.json").read_text()
        )
        assert manifest["framework"] == framework


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def _infer_request(table: pa.Table, names: list[str]) -> dict[str, Any]:
    inputs = []
    for name in names:
        column = table.column(name)
        if pa.types.is_floating(column.type):
            datatype = "FP64"
        elif pa.types.is_integer(column.type):
            datatype = "INT64"
        else:
            datatype = "BYTES"
        inputs.append(
            {
                "name": name,
                "shape": [table.num_rows],
                "datatype": datatype,
                "data": column.to_pylist(),
            }
        )
    return {"inputs": inputs}


def _inputs(uri: str) -> list[str]:
    """The version's signature inputs (a custom model may take a subset of the features)."""
    manifest = json.loads((Path(uri.removeprefix("file://")) / "manifest.json").read_text())
    return [f["name"] for f in manifest["signature"]["inputs"]]


@pytest.fixture(scope="module")
def served(
    venvs: dict[str, ImageEnv],
    versions: dict[str, dict[str, Any]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, tuple[int, Any, int, str]]]:
    """Framework -> (status, V2 response, exit code after SIGTERM, log) of its version served
    in the server image, with payload logging into <tmp>/logs/<framework>."""
    tmp = tmp_path_factory.mktemp("serve")
    rows = churn_table(ROWS, seed=11)
    out = {}
    for framework, result in versions.items():
        name = f"churn-{framework}"
        doc = {
            "apiVersion": "kubeloop.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {
                "model": {"uri": result["uri"]},
                "replicas": 1,
                "payloadLogging": {
                    "enabled": True,
                    "sampleRate": 1.0,
                    "destination": (tmp / "logs" / framework).as_uri() + "/",
                },
            },
        }
        deployment = build_server_deployment(
            _owner("ModelDeployment", name),
            parse_resource(doc).spec,
            model_uri=result["uri"],
            model_version=str(result["version"]),
            defaults=WorkloadDefaults(),
        )
        process = _process(deployment, venvs["server"], tmp / f"pod-{framework}")
        assert process.readiness is not None
        base = f"http://127.0.0.1:{process.readiness.port}"
        log_path = tmp / f"{framework}.log"
        with log_path.open("w") as log:
            server = subprocess.Popen(
                process.argv, env=process.env, cwd=process.cwd, stdout=log, stderr=subprocess.STDOUT
            )
        try:
            deadline = time.monotonic() + 120
            while _get(base + process.readiness.path) != 200:
                assert server.poll() is None, f"server exited:\n{log_path.read_text()}"
                assert time.monotonic() < deadline, f"not ready in 120 s:\n{log_path.read_text()}"
                time.sleep(0.2)
            request = urllib.request.Request(
                f"{base}/v2/models/{name}/infer",
                data=json.dumps(_infer_request(rows, _inputs(result["uri"]))).encode(),
                headers={"Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    status, body = response.status, json.loads(response.read())
            except urllib.error.HTTPError as exc:
                status, body = exc.code, exc.read().decode()
        finally:
            server.send_signal(signal.SIGTERM)  # what the kubelet sends; flushes the payload log
            code = server.wait(timeout=60)
        out[framework] = (status, body, code, log_path.read_text())
    yield out


def test_the_server_image_serves_every_framework(
    served: dict[str, tuple[int, Any, int, str]],
) -> None:
    assert set(served) == set(FRAMEWORKS)
    for framework, (status, body, code, log) in served.items():
        assert status == 200, f"{framework}: {body}\n{log}"
        (output,) = [o for o in body["outputs"] if o["name"] == "predict"] or body["outputs"][:1]
        assert output["shape"][0] == ROWS, framework
        assert code == 0, f"{framework}: exit {code} after SIGTERM\n{log}"


def test_the_monitor_image_checks_the_served_traffic(
    venvs: dict[str, ImageEnv],
    versions: dict[str, dict[str, Any]],
    served: dict[str, tuple[int, Any, int, str]],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    tmp = tmp_path_factory.getbasetemp()
    logs = next(tmp.glob("serve*/logs/sklearn"))
    assert list(logs.rglob("*.parquet")), "the server wrote no payload log"
    result = versions["sklearn"]
    doc = {
        "apiVersion": "kubeloop.io/v1alpha1",
        "kind": "DriftMonitor",
        "metadata": {"name": "churn-drift", "namespace": NAMESPACE},
        "spec": {
            "deploymentRef": {"name": "churn-sklearn"},
            "schedule": "*/30 * * * *",
            "window": "24h",
        },
    }
    cronjob = build_monitor_cronjob(
        _owner("DriftMonitor", "churn-drift"),
        parse_resource(doc).spec,
        payload_log_uri=logs.as_uri() + "/",
        reference=result["uri"],
        model_version=str(result["version"]),
        defaults=WorkloadDefaults(),
    )
    code, verdict, log = _run(_process(cronjob, venvs["monitor"], tmp / "pod-monitor"))
    assert code == 0, f"{verdict}\n{log}"
    assert verdict["kind"] == "DriftResult" and verdict["verdict"] in ("Drift", "NoDrift"), verdict
    assert verdict["rows"] == ROWS


def test_the_operator_image_loads_the_operator(venvs: dict[str, ImageEnv]) -> None:
    """`kubeloop operator` imports every handler module, with only the core dependencies."""
    env = {"PATH": f"{venvs['operator'].path / 'bin'}:/usr/bin:/bin", "HOME": "/tmp"}
    proc = subprocess.run(
        [str(venvs["operator"].bin("kubeloop")), "operator", "--help"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "usage: kubeloop operator" in proc.stdout
