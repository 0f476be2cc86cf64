"""Pod template -> local process: the pure part of the pod runner.

A container in a Job, CronJob or Deployment becomes one local process started from its exact
`command` + `args` and `env`. What a kubelet would do and a laptop cannot is translated here,
explicitly and nowhere else:

- the image is ignored: the command runs on this machine, with its programs. A container
  without `command` gets the Kubeloop images' entrypoint (`kubeloop`), and without `args` the
  image's default verb (the Dockerfiles' `CMD`). `kubeloop` (when its console script is not on
  PATH) and a program named exactly `python` or `python3` run with this interpreter
  (`sys.executable`): a user image's Python is this machine's, with the libraries installed
  here (an absolute path such as `/usr/local/bin/python` is run as written);
- working directory: a `workingDir` under an `emptyDir` mount is that volume's local folder
  (created if missing, as the runtime does); any other `workingDir` is used when it is an
  existing folder on this machine, and otherwise ignored, not an error: an image's `/app` has
  no counterpart here, so the process runs in the folder `kubeloop local` was started in (the
  `cwd` argument of `build_process`; the pod's own folder when none is given), and a relative
  command such as `python examples/byo/digits/train.py` means what it means to the user;
- `env[].valueFrom` is resolved like the kubelet: `secretKeyRef` from Secrets in the API,
  `configMapKeyRef`, `fieldRef` (metadata.name/namespace/uid/labels/annotations, spec.nodeName,
  status.podIP...), `resourceFieldRef`; `$(VAR)` references are expanded;
- `emptyDir` mounts become a per-pod folder (`<pod dir>/volumes/<volume>`), the same one for
  every container of the pod, init containers included: env values (each entry of a `*PATH`
  search path such as `PYTHONPATH=/kubeloop/sdk:/app`), args and `workingDir` under a mount
  path are rewritten to it (pods run with a read-only root filesystem and scratch at
  `/scratch`);
- `secret` volumes become a per-pod folder too, with the Secret's keys (or its `items`) written
  as files with the volume's `defaultMode` (0644 when unset), as the kubelet projects them; a
  missing Secret or key is an `EnvError` unless the volume is `optional`;
- the termination-message file becomes a file of the pod's folder, one per container
  (`container_files`: the main container's `termination-log`, an init container's
  `termination-log.<name>`), and `KUBELOOP_RESULT_PATH` points at it;
- declared container ports get free loopback ports; `KUBELOOP_PORT` (and any `*_PORT` env equal
  to a container port) is rewritten, and the readiness probe is checked on the new port;
- Indexed Jobs: `JOB_COMPLETION_INDEX` per pod; a `MASTER_ADDR` naming a pod of the Job's
  headless Service becomes 127.0.0.1 (every "node" is this machine);
- CPU limits: a kubelet enforces them with a CFS quota, a local process cannot be throttled,
  so the native thread pools (OpenMP, BLAS, PyTorch) are sized to the container's CPU limit
  instead (`OMP_NUM_THREADS` etc., unless the container sets them): without it every process
  spins one thread per core, and a few pods on a small machine starve each other.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_TERMINATION_PATH",
    "IMAGE_ENTRYPOINT",
    "PYTHON_PROGRAMS",
    "ContainerFiles",
    "EnvError",
    "ProcessSpec",
    "ReadinessProbe",
    "build_process",
    "completion_indexes",
    "container_files",
    "cpu_threads",
    "default_args",
    "expand_vars",
    "field_value",
    "pod_from_template",
    "resolve_env",
]

DEFAULT_TERMINATION_PATH = "/dev/termination-log"
# Every Kubeloop image has ENTRYPOINT ["kubeloop"] and CMD [<verb>] (images/*/Dockerfile).
IMAGE_ENTRYPOINT = ("kubeloop",)
_IMAGE_VERBS = (
    ("trainer", "train"),
    ("server", "serve"),
    ("monitor", "monitor"),
    ("operator", "operator"),
)
# Programs that mean "the image's Python"; locally that is the interpreter running kubeloop.
PYTHON_PROGRAMS = ("python", "python3")
_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)|\$\$")


class EnvError(RuntimeError):
    """An env var cannot be resolved; the kubelet reports CreateContainerConfigError."""


@dataclass(frozen=True)
class ReadinessProbe:
    """An httpGet readiness probe, with the port already mapped to loopback."""

    port: int
    path: str = "/"
    scheme: str = "http"  # "https" for `scheme: HTTPS` (the kubelet skips certificate checks)
    initial_delay_seconds: float = 0
    period_seconds: float = 10
    failure_threshold: int = 3
    timeout_seconds: float = 1

    @property
    def url(self) -> str:
        """The probe's URL on loopback."""
        return f"{self.scheme}://127.0.0.1:{self.port}{self.path}"


@dataclass(frozen=True)
class ContainerFiles:
    """Where one container's output goes in its pod's folder."""

    log: Path
    termination: Path


def container_files(pod_dir: Path, name: str, *, init: bool = False) -> ContainerFiles:
    """The log and termination-message files of a container.

    The main container keeps the names a pod had before init containers (`log`,
    `termination-log`: tools and tests read them); an init container gets its own
    (`log.<name>`, `termination-log.<name>`), so its message is never the main container's.
    """
    suffix = f".{name}" if init else ""
    return ContainerFiles(pod_dir / f"log{suffix}", pod_dir / f"termination-log{suffix}")


@dataclass
class ProcessSpec:
    """What to start for one container of one pod."""

    argv: list[str]
    env: dict[str, str]
    cwd: str
    termination_path: Path
    termination_policy: str = "File"
    ports: dict[int, int] = field(default_factory=dict)  # containerPort -> loopback port
    named_ports: dict[str, int] = field(default_factory=dict)  # port name -> loopback port
    readiness: ReadinessProbe | None = None


def default_args(image: str) -> list[str]:
    """The CMD of a Kubeloop image, from its name (`.../kubeloop-trainer:1` -> ['train'])."""
    repo = image.rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0]
    for needle, verb in _IMAGE_VERBS:
        if needle in repo:
            return [verb]
    return []


def _lookup(mapping: Mapping[str, Any], path: str) -> Any:
    # fieldRef paths: metadata.labels['app.kubernetes.io/name'] or dotted keys.
    bracket = re.fullmatch(r"(.+)\['(.+)'\]", path)
    if bracket:
        parent = _lookup(mapping, bracket.group(1))
        return parent.get(bracket.group(2)) if isinstance(parent, dict) else None
    node: Any = mapping
    for part in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def field_value(pod: Mapping[str, Any], path: str) -> str:
    """The value of a downward-API `fieldRef.fieldPath` for a pod."""
    if path in ("metadata.labels", "metadata.annotations"):
        items = _lookup(pod, path) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(items.items()))
    value = _lookup(pod, path)
    if value is None:
        raise EnvError(f"fieldRef {path!r} is not set on the pod")
    return str(value)


def expand_vars(text: str, env: Mapping[str, str]) -> str:
    """Expand `$(VAR)` like the kubelet: unknown references stay as written, `$$` is `$`."""

    def sub(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env[name] if name in env else match.group(0)

    return _VAR.sub(sub, text)


def _decode_secret(secret: Mapping[str, Any], key: str) -> str | None:
    import base64

    if key in (secret.get("stringData") or {}):
        return str(secret["stringData"][key])
    data = secret.get("data") or {}
    if key in data:
        return base64.b64decode(data[key]).decode()
    return None


def resolve_env(
    container: Mapping[str, Any],
    pod: Mapping[str, Any],
    secrets: Mapping[str, Mapping[str, Any]],
    config_maps: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, str]:
    """The env of a container as the kubelet builds it (envFrom first, then env in order).

    `secrets` and `config_maps` are by name, in the pod's namespace. A missing Secret or key
    raises `EnvError` unless the reference is `optional`, as the kubelet does.
    """
    config_maps = config_maps or {}
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        if "secretRef" in source:
            ref = source["secretRef"]
            secret = secrets.get(ref["name"])
            if secret is None:
                if ref.get("optional"):
                    continue
                raise EnvError(f"secret {ref['name']!r} not found")
            keys = {*(secret.get("data") or {}), *(secret.get("stringData") or {})}
            for key in sorted(keys):
                env[prefix + key] = _decode_secret(secret, key) or ""
        if "configMapRef" in source:
            ref = source["configMapRef"]
            cm = config_maps.get(ref["name"])
            if cm is None:
                if ref.get("optional"):
                    continue
                raise EnvError(f"configmap {ref['name']!r} not found")
            for key, value in (cm.get("data") or {}).items():
                env[prefix + key] = str(value)
    for var in container.get("env") or []:
        name = var["name"]
        if "value" in var:
            env[name] = expand_vars(str(var["value"]), env)
            continue
        source = var.get("valueFrom")
        if not source:
            env[name] = ""
            continue
        if "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            secret = secrets.get(ref["name"])
            value = _decode_secret(secret, ref["key"]) if secret is not None else None
            if value is None:
                if ref.get("optional"):
                    continue
                what = "secret" if secret is None else "key"
                raise EnvError(
                    f"env {name}: {what} {ref['name']!r}"
                    + ("" if secret is None else f" has no key {ref['key']!r}")
                    + (" not found" if secret is None else "")
                )
            env[name] = value
        elif "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            cm = config_maps.get(ref["name"])
            data = (cm or {}).get("data") or {}
            if ref["key"] not in data:
                if ref.get("optional"):
                    continue
                raise EnvError(f"env {name}: configmap {ref['name']!r} key {ref['key']!r} missing")
            env[name] = str(data[ref["key"]])
        elif "fieldRef" in source:
            env[name] = field_value(pod, source["fieldRef"]["fieldPath"])
        elif "resourceFieldRef" in source:
            ref = source["resourceFieldRef"]
            resources = container.get("resources") or {}
            kind, _, res = ref["resource"].partition(".")
            value = (resources.get(kind) or {}).get(res)
            env[name] = str(value if value is not None else 0)
    return env


def completion_indexes(job: Mapping[str, Any]) -> list[int | None]:
    """The pods a Job runs: indexes 0..completions-1 when Indexed, else [None] * completions."""
    spec = job.get("spec") or {}
    completions = spec.get("completions")
    parallelism = spec.get("parallelism", 1)
    count = int(completions if completions is not None else parallelism or 1)
    if spec.get("completionMode") == "Indexed":
        return list(range(count))
    return [None] * count


def _resolve_program(argv: list[str]) -> list[str]:
    # `kubeloop` runs with this interpreter when its console script is not on PATH (a source
    # checkout run with `python -m`); the image's `python` is this interpreter, not whichever
    # `python` PATH finds first (it may lack the libraries, or be Python 2); the command is
    # otherwise exactly the container's.
    if argv and argv[0] == "kubeloop" and shutil.which("kubeloop") is None:
        return [sys.executable, "-m", "kubeloop.cli", *argv[1:]]
    if argv and argv[0] in PYTHON_PROGRAMS:
        return [sys.executable, *argv[1:]]
    return argv


def _working_dir(workdir: str | None, mounts: Mapping[str, Path], default: str) -> str:
    """The process's cwd for a container's `workingDir` (see the module docstring)."""
    if not workdir:
        return default
    local = _rewrite_path(workdir, mounts)
    if local != workdir:  # under an emptyDir: a folder of this pod
        Path(local).mkdir(parents=True, exist_ok=True)
        return local
    return workdir if Path(workdir).is_dir() else default


THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def cpu_threads(container: Mapping[str, Any]) -> int | None:
    """Threads a container's CPU limit allows (`"1500m"` -> 2, `"2"` -> 2); None when unset."""
    resources = container.get("resources") or {}
    cpu = (resources.get("limits") or {}).get("cpu")
    if cpu is None:
        return None
    text = str(cpu)
    cores = float(text[:-1]) / 1000 if text.endswith("m") else float(text)
    return max(1, -int(-cores // 1))


def _project_secret(
    volume: Mapping[str, Any], secrets: Mapping[str, Mapping[str, Any]], folder: Path
) -> None:
    """Write a `secret` volume's files into `folder`, as the kubelet projects them."""
    source = volume["secret"]
    name = source.get("secretName", "")
    secret = secrets.get(name)
    if secret is None:
        if source.get("optional"):
            return
        raise EnvError(f"volume {volume['name']!r}: secret {name!r} not found")
    keys = {*(secret.get("data") or {}), *(secret.get("stringData") or {})}
    items = source.get("items") or [{"key": k, "path": k} for k in sorted(keys)]
    mode = int(source.get("defaultMode", 0o644))
    for item in items:
        value = _decode_secret(secret, item["key"])
        if value is None:
            if source.get("optional"):
                continue
            raise EnvError(f"volume {volume['name']!r}: secret {name!r} has no key {item['key']!r}")
        target = folder / item["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(value)
        # Owner-readable at least: locally the pod's files belong to this user, not to fsGroup.
        target.chmod(int(item.get("mode", mode)) | 0o400)


def _rewrite_path(value: str, mounts: Mapping[str, Path]) -> str:
    for mount_path, local in sorted(mounts.items(), key=lambda kv: -len(kv[0])):
        mount = mount_path.rstrip("/")
        if value == mount or value.startswith(mount + "/"):
            return str(local) + value[len(mount) :]
        # --flag=/scratch/x
        if "=" in value:
            head, _, tail = value.partition("=")
            if tail == mount or tail.startswith(mount + "/"):
                return f"{head}={local}{tail[len(mount) :]}"
    return value


def _probe(
    container: Mapping[str, Any], ports: Mapping[int, int], named: Mapping[str, int]
) -> ReadinessProbe | None:
    probe = container.get("readinessProbe") or {}
    http = probe.get("httpGet")
    if not http:
        return None
    port = http.get("port")
    if isinstance(port, str) and not port.isdigit():
        local = named.get(port)
    else:
        local = ports.get(int(port)) if port is not None else None
    if local is None:
        return None
    return ReadinessProbe(
        port=local,
        path=http.get("path", "/"),
        scheme=str(http.get("scheme", "HTTP")).lower(),
        initial_delay_seconds=float(probe.get("initialDelaySeconds", 0)),
        period_seconds=float(probe.get("periodSeconds", 10)),
        failure_threshold=int(probe.get("failureThreshold", 3)),
        timeout_seconds=float(probe.get("timeoutSeconds", 1)),
    )


def build_process(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    *,
    secrets: Mapping[str, Mapping[str, Any]],
    pod_dir: Path,
    free_port: Any = None,
    config_maps: Mapping[str, Mapping[str, Any]] | None = None,
    extra_env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    init: bool = False,
) -> ProcessSpec:
    """Translate one container of a pod into a process spec (see the module docstring).

    `pod` is the Pod object (metadata + spec) the process stands for; `pod_dir` a fresh folder
    owned by this pod; `free_port()` returns a free loopback port (required when the container
    declares ports). `extra_env` is added last (e.g. KUBECONFIG for the emulated API). `cwd`
    stands for the image's WORKDIR (default `pod_dir`): `kubeloop local` passes the folder it
    was started in, so relative `file://` URIs mean the same to the user, operator and pods.
    `init` says the container is one of the pod's `initContainers` (its own message file).
    """
    pod_spec = pod.get("spec") or {}
    volumes = {v["name"]: v for v in pod_spec.get("volumes") or []}
    mounts: dict[str, Path] = {}
    for mount in container.get("volumeMounts") or []:
        volume = volumes.get(mount["name"], {})
        if "emptyDir" in volume or "secret" in volume or not volume:
            local = pod_dir / "volumes" / mount["name"]
            local.mkdir(parents=True, exist_ok=True)
            if "secret" in volume:
                _project_secret(volume, secrets, local)
            mounts[mount["mountPath"]] = local
    env = resolve_env(container, pod, secrets, config_maps)

    ports: dict[int, int] = {}
    named: dict[str, int] = {}
    for port in container.get("ports") or []:
        if free_port is None:
            raise ValueError("the container declares ports: pass free_port")
        local_port = int(free_port())
        ports[int(port["containerPort"])] = local_port
        if port.get("name"):
            named[port["name"]] = local_port
    for name, value in list(env.items()):
        if name.endswith("PORT") and value.isdigit() and int(value) in ports:
            # MASTER_PORT of a DDP job is a rendezvous port, not a served one: left alone.
            env[name] = str(ports[int(value)])
    if "KUBELOOP_PORT" not in env and ports and container.get("readinessProbe"):
        env["KUBELOOP_PORT"] = str(next(iter(ports.values())))

    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    index = annotations.get("batch.kubernetes.io/job-completion-index")
    if index is not None:
        env.setdefault("JOB_COMPLETION_INDEX", str(index))
        subdomain = pod_spec.get("subdomain")
        master = env.get("MASTER_ADDR", "")
        if subdomain and (master.endswith("." + subdomain) or subdomain + "." in master):
            env["MASTER_ADDR"] = "127.0.0.1"

    for name, value in list(env.items()):
        if name.endswith("PATH") and os.pathsep in value:
            # A search path (PYTHONPATH=/kubeloop/sdk:/app): each entry is a path of its own.
            parts = value.split(os.pathsep)
            env[name] = os.pathsep.join(_rewrite_path(part, mounts) for part in parts)
        else:
            env[name] = _rewrite_path(value, mounts)

    termination = container_files(pod_dir, str(container.get("name", "")), init=init).termination
    termination.touch()
    term_path = container.get("terminationMessagePath", DEFAULT_TERMINATION_PATH)
    for name, value in list(env.items()):
        if value == term_path:
            env[name] = str(termination)
    env["KUBELOOP_RESULT_PATH"] = str(termination)
    threads = cpu_threads(container)
    if threads is not None:
        for name in THREAD_ENV:
            env.setdefault(name, str(threads))
    env.update(extra_env or {})

    command = list(container.get("command") or IMAGE_ENTRYPOINT)
    args = container.get("args")
    if args is None and not container.get("command"):
        args = default_args(str(container.get("image", "")))
    argv = [expand_vars(str(a), env) for a in [*command, *(args or [])]]
    argv = [_rewrite_path(a, mounts) for a in argv]
    env.setdefault("TMPDIR", str(pod_dir))
    return ProcessSpec(
        argv=_resolve_program(argv),
        env=env,
        cwd=_working_dir(container.get("workingDir"), mounts, cwd or str(pod_dir)),
        termination_path=termination,
        termination_policy=container.get("terminationMessagePolicy", "File"),
        ports=ports,
        named_ports=named,
        readiness=_probe(container, ports, named),
    )


def pod_from_template(
    template: Mapping[str, Any],
    *,
    name: str,
    namespace: str,
    owner: Mapping[str, Any],
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A Pod object from a pod template, owned (ownerReference, controller) by `owner`."""
    meta = copy.deepcopy(template.get("metadata") or {})
    pod_labels = {**(meta.get("labels") or {}), **(labels or {})}
    pod_annotations = {**(meta.get("annotations") or {}), **(annotations or {})}
    owner_meta = owner.get("metadata") or {}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": pod_labels,
            "annotations": pod_annotations,
            "ownerReferences": [
                {
                    "apiVersion": owner.get("apiVersion"),
                    "kind": owner.get("kind"),
                    "name": owner_meta.get("name"),
                    "uid": owner_meta.get("uid"),
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": copy.deepcopy(template.get("spec") or {}),
    }
